"""load_capture format detection, area downscaling, and `loopnerf info`."""

import json

import numpy as np
import pytest

from loopnerf.cli import main
from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.data.images import area_weights, resize_area
from loopnerf.data.load import capture_format, load_capture
from loopnerf.data.nerfstudio import write_nerfstudio
from loopnerf.errors import CaptureError
from loopnerf.info import describe, read_safetensors_header


def tiny_capture(n=6):
    rng = np.random.default_rng(3)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, 0, 3] = np.arange(n) * 0.5  # path length 0.5 * (n - 1)
    return Capture(
        images=rng.integers(0, 256, (n, 4, 6, 3), dtype=np.uint8), c2w=c2w,
        intrinsics=[Intrinsics(5.0, 5.0, 3.0, 2.0, 6, 4)] * n, times=np.linspace(0, 1, n),
        eval_idx=[2], train_idx=[0, 1, 3, 4, 5], box=np.array([[-1.0, -1, -1], [1, 1, 1]]),
    )


def test_detection(tmp_path):
    write_nerfstudio(tmp_path / "ns", tiny_capture())
    assert capture_format(tmp_path / "ns") == "nerfstudio"
    assert capture_format(tmp_path / "ns" / "transforms.json") == "nerfstudio"
    (tmp_path / "dn").mkdir()
    (tmp_path / "dn" / "transforms_val.json").write_text("{}")
    assert capture_format(tmp_path / "dn") == "dnerf"
    assert capture_format(tmp_path / "x.npz") is None  # does not exist
    (tmp_path / "x.npz").write_bytes(b"")
    assert capture_format(tmp_path / "x.npz") == "dnerf_npz"
    assert capture_format(tmp_path) is None


def test_options_are_checked(tmp_path):
    write_nerfstudio(tmp_path, tiny_capture())
    with pytest.raises(CaptureError, match="frame_step do not apply to the nerfstudio"):
        load_capture(tmp_path, frame_step=2)
    box = [[-2, -2, -2], [2, 2, 2]]
    assert np.allclose(load_capture(tmp_path, box=box).box, box)


def test_area_resampling_non_integer_factor():
    # 6 -> 4 pixels: output j covers input [1.5 j, 1.5 j + 1.5)
    w = area_weights(6, 4)
    assert np.allclose(w.sum(1), 1) and np.allclose(w[1], [0, 1 / 3, 2 / 3, 0, 0, 0])
    img = np.arange(6, dtype=np.float32)[None, :, None].repeat(2, 0)
    out = resize_area(img, 4, 2)
    assert np.allclose(out[0, :, 0], [1 / 3, 5 / 3, 10 / 3, 14 / 3])
    # a constant image stays constant
    assert np.allclose(resize_area(np.full((7, 5, 3), 0.3, np.float32), 3, 2), 0.3)


def test_info_json_for_capture(tmp_path, capsys):
    write_nerfstudio(tmp_path, tiny_capture())
    assert main(["info", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "capture" and out["format"] == "nerfstudio"
    assert out["frames"] == 6 and out["train_frames"] == 5 and out["held_out_frames"] == 1
    assert out["resolution"] == "6x4" and out["time_range"] == [0.0, 1.0]
    assert out["camera_path_length"] == pytest.approx(2.5)
    assert out["scene_box"] == [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def test_info_table_for_capture(tmp_path, capsys):
    write_nerfstudio(tmp_path, tiny_capture())
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "camera path length" in out and "2.5" in out and "6x4" in out


def test_info_safetensors_header_only(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.float16)}, str(path), metadata={"config": "{}"})
    out = describe(path)
    assert out["kind"] == "checkpoint" and out["tensors"] == 2 and out["parameters"] == 17
    assert out["tensor_shapes"]["a"] == ["F32", [3, 4]] and out["metadata_keys"] == ["config"]
    (tmp_path / "fake.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(Exception, match="not a safetensors file"):
        read_safetensors_header(tmp_path / "fake.safetensors")


def test_info_loop_file_uses_export_reader(tmp_path):
    from fixtures.demo_loop import make_test_loop
    from loopnerf import export

    baked = make_test_loop()
    path = export.save_loop(tmp_path / "scene.loop", baked)
    out = describe(path)
    assert out["kind"] == "loop" and out["frames"] == baked.frames and out["format"] == "loopnerf.loop"
