"""The baked `.loop` format: exact round trip, and every bad input of issue 6 raising
`LoopFormatError` with a message that names the file and the problem."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from loopnerf.errors import LoopNeRFError
from fixtures.demo_loop import make_test_loop
from loopnerf.export import BakedLoop, LoopFormatError, load_loop, save_loop


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def baked() -> BakedLoop:
    return make_test_loop(frames=6, resolution=8, features=4, scales=(1, 2), seed=3)


@pytest.fixture()
def loop_file(tmp_path, baked) -> Path:
    return save_loop(tmp_path / "scene.loop", baked)


def _write_raw(path: Path, header: dict, tensors: dict) -> Path:
    save_file(tensors, str(path), metadata={"loopnerf": json.dumps(header)})
    return path


def _expect_error(path: Path, *words: str) -> str:
    with pytest.raises(LoopFormatError) as info:
        load_loop(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_round_trip_is_exact(loop_file, baked):
    back = load_loop(loop_file)
    assert back.header() == baked.header()
    a, b = baked.tensors(), back.tensors()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k
    assert back.static_planes[1][0].dtype == torch.float16
    assert back.static_planes[1][0].shape == (16, 16, 4)  # scale 2 of resolution 8
    assert back.loop_planes[0][2].shape == (6, 8, 4)
    assert back.occupancy.dtype == torch.uint8
    assert not any(p.name.endswith(".tmp") for p in loop_file.parent.iterdir())


def test_save_overwrites_atomically(tmp_path, baked):
    path = tmp_path / "scene.loop"
    save_loop(path, baked)
    save_loop(path, baked)  # replacing an existing file works and leaves no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.loop"]


def test_test_loop_is_deterministic_and_loops():
    a = make_test_loop(frames=4, resolution=8, features=3, scales=(1,), seed=1)
    b = make_test_loop(frames=4, resolution=8, features=3, scales=(1,), seed=1)
    for k, v in a.tensors().items():
        assert torch.equal(v, b.tensors()[k]), k
    # the blob moves: the loop planes differ between frames
    assert not torch.equal(a.loop_planes[0][0][0], a.loop_planes[0][0][1])
    assert 0 < float(a.occupancy.float().mean()) < 1


def test_truncated_file(loop_file):
    data = loop_file.read_bytes()
    loop_file.write_bytes(data[: len(data) // 2])
    _expect_error(loop_file, "truncated")
    loop_file.write_bytes(data[:5])
    _expect_error(loop_file, "too short")
    loop_file.write_bytes(b"")
    _expect_error(loop_file)


def test_not_safetensors(tmp_path):
    path = tmp_path / "text.loop"
    path.write_text("this is a text file, not a baked loop\n" * 10)
    _expect_error(path, "not a .loop file")
    path.write_bytes(os.urandom(4096))
    _expect_error(path)


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "absent.loop", "no such file")


class _Bomb:
    """Unpickling this would create the marker file: load_loop must never unpickle."""

    marker: str = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_renamed_to_loop_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    bomb = _Bomb()
    bomb.marker = str(marker)
    path = tmp_path / "evil.loop"
    with open(path, "wb") as f:
        pickle.dump({"static.0.xy": bomb, "payload": list(range(1000))}, f)
    # torch.save also pickles (zip container): a common thing to mistake for a model file
    path2 = tmp_path / "torch.loop"
    torch.save({"x": torch.zeros(3)}, path2)
    _expect_error(path, "not a .loop file")
    _expect_error(path2, "not a .loop file")
    assert not marker.exists()


def test_safetensors_of_something_else(tmp_path):
    path = tmp_path / "weights.loop"
    save_file({"layer.weight": torch.zeros(4, 4)}, str(path))
    _expect_error(path, "not a .loop file", "loopnerf")
    path2 = tmp_path / "other.loop"
    save_file({"layer.weight": torch.zeros(4, 4)}, str(path2), metadata={"format": "pt"})
    _expect_error(path2, "not a .loop file")


def test_wrong_format_name_and_version(tmp_path, baked):
    header, tensors = baked.header(), baked.tensors()
    _expect_error(_write_raw(tmp_path / "v3.loop", {**header, "version": 3}, tensors), "version 3")
    _expect_error(_write_raw(tmp_path / "vs.loop", {**header, "version": "1"}, tensors), "version")
    _expect_error(_write_raw(tmp_path / "name.loop", {**header, "format": "other"}, tensors), "'format'")


def test_missing_tensor(tmp_path, baked):
    tensors = baked.tensors()
    del tensors["loop.1.yt"]
    _expect_error(_write_raw(tmp_path / "m.loop", baked.header(), tensors), "loop.1.yt", "missing")
    tensors = baked.tensors()
    del tensors["decoder.dir_table"]
    _expect_error(_write_raw(tmp_path / "m2.loop", baked.header(), tensors), "decoder.dir_table", "missing")


def test_unexpected_tensor(tmp_path, baked):
    tensors = {**baked.tensors(), "static.2.xy": torch.zeros(2, 2, dtype=torch.float16)}
    _expect_error(_write_raw(tmp_path / "u.loop", baked.header(), tensors), "static.2.xy", "unexpected")


def test_wrong_shape(tmp_path, baked):
    tensors = baked.tensors()
    tensors["static.0.xz"] = tensors["static.0.xz"][:, :-1].contiguous()
    msg = _expect_error(_write_raw(tmp_path / "s.loop", baked.header(), tensors), "static.0.xz", "shape")
    assert "[8, 7, 4]" in msg and "[8, 8, 4]" in msg
    # the header disagreeing with the tensors is the same error
    header = {**baked.header(), "frames": 7}
    _expect_error(_write_raw(tmp_path / "f.loop", header, baked.tensors()), "loop.0.xt", "shape")
    tensors = baked.tensors()
    tensors["occupancy"] = tensors["occupancy"][:, :, :4].contiguous()
    _expect_error(_write_raw(tmp_path / "o.loop", baked.header(), tensors), "occupancy", "shape")


def test_wrong_dtype(tmp_path, baked):
    tensors = baked.tensors()
    tensors["loop.0.zt"] = tensors["loop.0.zt"].float()
    _expect_error(_write_raw(tmp_path / "d.loop", baked.header(), tensors), "loop.0.zt", "float32", "float16")


@pytest.mark.parametrize("name", ["static.1.yz", "loop.0.xt", "decoder.dir_table", "decoder.sigma_weight"])
def test_nan_or_inf(tmp_path, baked, name):
    tensors = baked.tensors()
    t = tensors[name].clone()
    t.view(-1)[3] = float("nan")
    _expect_error(_write_raw(tmp_path / "nan.loop", baked.header(), {**tensors, name: t}), name, "non-finite")
    t.view(-1)[3] = float("inf")
    _expect_error(_write_raw(tmp_path / "inf.loop", baked.header(), {**tensors, name: t}), name, "non-finite")


def test_occupancy_values(tmp_path, baked):
    tensors = baked.tensors()
    tensors["occupancy"] = tensors["occupancy"].clone()
    tensors["occupancy"][0, 0, 0] = 7
    _expect_error(_write_raw(tmp_path / "occ.loop", baked.header(), tensors), "occupancy", "0 and 1")


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("frames", "6", ("'frames'", "integer")),
        ("frames", True, ("'frames'",)),
        ("fps", -1.0, ("'fps'", "> 0")),
        ("box", [[0, 0, 0], [1, -1, 1]], ("'box'", "max > min")),
        ("scales", [], ("'scales'",)),
        ("decoder", "mlp", ("'decoder'", "linear")),
        ("contraction", "mipnerf360", ("'contraction'",)),
        ("background", [0, 0, 2], ("'background'",)),
        ("near", 20.0, ("'near'", "'far'")),
        ("up", [0, 0], ("'up'",)),
        ("camera", {"c2w": [[1, 0, 0, 0]], "fx": 1}, ("camera.c2w",)),
    ],
)
def test_bad_header_fields(tmp_path, baked, field, value, words):
    header = {**baked.header(), field: value}
    _expect_error(_write_raw(tmp_path / "h.loop", header, baked.tensors()), *words)


def test_missing_header_field(tmp_path, baked):
    header = baked.header()
    del header["step"]
    _expect_error(_write_raw(tmp_path / "h.loop", header, baked.tensors()), "'step'", "missing")


def test_error_type_is_a_loopnerf_error():
    assert issubclass(LoopFormatError, LoopNeRFError)


def test_save_refuses_invalid_loop(tmp_path, baked):
    bad = BakedLoop(**{**baked.__dict__, "frames": baked.frames + 1})
    with pytest.raises(LoopFormatError):
        save_loop(tmp_path / "bad.loop", bad)
    assert not list(tmp_path.iterdir())


def test_import_is_cheap():
    code = "import sys, loopnerf.export as e; e.LoopFormatError; print(sorted(m for m in ('torch', 'taichi', 'open3d', 'safetensors') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_info_prints_loop_header(loop_file):
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; from loopnerf.cli import main; sys.exit(main(['info', {str(loop_file)!r}]))"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 frames" in proc.stdout and "loopnerf.loop" in proc.stdout


def test_density_bounds_are_optional_and_checked(tmp_path, baked):
    import dataclasses

    assert baked.density_max is not None and baked.density_max.dtype == torch.float16
    # occupancy is the bound above the threshold (up to the bound's float16 rounding)
    bound = baked.density_max.float()
    differ = (bound > baked.density_threshold).to(torch.uint8) != baked.occupancy
    assert bool(((bound[differ] - baked.density_threshold).abs() <= 1e-3 * baked.density_threshold).all())
    back = load_loop(save_loop(tmp_path / "with.loop", baked))
    assert torch.equal(back.density_max, baked.density_max)
    old = load_loop(save_loop(tmp_path / "without.loop", dataclasses.replace(baked, density_max=None)))
    assert old.density_max is None
    tensors = baked.tensors()
    tensors["density_max"] = tensors["density_max"].clone()
    tensors["density_max"][1, 2, 3] = -1.0
    _expect_error(_write_raw(tmp_path / "neg.loop", baked.header(), tensors), "density_max", ">= 0")
    tensors["density_max"] = tensors["density_max"][:, :, :2].contiguous()
    _expect_error(_write_raw(tmp_path / "shape.loop", baked.header(), tensors), "density_max", "shape")
