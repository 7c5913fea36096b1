"""Bad input gives a `CaptureError` naming the file and the field; the CLI shows the
message without a traceback and exits non-zero."""

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from loopnerf.cli import main
from loopnerf.data.capture import Capture
from loopnerf.data.dnerf import load_dnerf, load_dnerf_npz
from loopnerf.data.llff import load_llff
from loopnerf.data.load import load_capture
from loopnerf.errors import CaptureError, LoopNeRFError


def scene(tmp_path, n=3, sizes=None):
    """A valid nerfstudio folder; returns (folder, meta) so a test can break one thing."""
    (tmp_path / "images").mkdir()
    frames = []
    for i in range(n):
        w, h = (sizes or {}).get(i, (8, 6))
        iio.imwrite(tmp_path / "images" / f"{i}.png", np.full((h, w, 3), 10 * i, np.uint8))
        pose = np.eye(4)
        pose[0, 3] = i
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": pose.tolist(), "time": i / max(n - 1, 1)})
    return tmp_path, {"fl_x": 10.0, "frames": frames}


def load_broken(folder, meta):
    (folder / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(CaptureError) as err:
        load_capture(folder)
    msg = str(err.value)
    assert "transforms.json" in msg  # names the file
    return msg


def test_valid_scene_loads(tmp_path):
    folder, meta = scene(tmp_path)
    (folder / "transforms.json").write_text(json.dumps(meta))
    assert len(load_capture(folder)) == 3


def test_missing_image(tmp_path):
    folder, meta = scene(tmp_path)
    (folder / "images" / "1.png").unlink()
    msg = load_broken(folder, meta)
    assert "frame 1" in msg and "'file_path'" in msg and "1.png" in msg and "does not exist" in msg


def test_unreadable_image(tmp_path):
    folder, meta = scene(tmp_path)
    (folder / "images" / "2.png").write_bytes(b"this is not a png")
    msg = load_broken(folder, meta)
    assert "frame 2" in msg and "cannot read image" in msg and "2.png" in msg


@pytest.mark.parametrize("key", ["file_path", "transform_matrix"])
def test_missing_frame_key(tmp_path, key):
    folder, meta = scene(tmp_path)
    del meta["frames"][1][key]
    msg = load_broken(folder, meta)
    assert f"frame 1: missing key '{key}'" in msg


def test_missing_top_level_keys(tmp_path):
    folder, meta = scene(tmp_path)
    assert "missing key 'frames'" in load_broken(folder, {"fl_x": 10.0})
    del meta["fl_x"]
    assert "missing key 'fl_x'" in load_broken(folder, meta)


def test_missing_time_in_some_frames(tmp_path):
    folder, meta = scene(tmp_path)
    del meta["frames"][2]["time"]
    assert "frame 2: missing key 'time'" in load_broken(folder, meta)


def test_images_of_different_sizes(tmp_path):
    folder, meta = scene(tmp_path, sizes={2: (10, 6)})
    msg = load_broken(folder, meta)
    assert "'file_path'" in msg and "images/2.png is 10x6" in msg and "one size" in msg


def test_non_finite_pose(tmp_path):
    folder, meta = scene(tmp_path)
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    msg = load_broken(folder, meta)
    assert "frame 1" in msg and "'transform_matrix'" in msg and "not finite" in msg


def test_non_rigid_pose(tmp_path):
    folder, meta = scene(tmp_path)
    meta["frames"][2]["transform_matrix"][0][0] = 2.0  # a scale is not a rigid transform
    msg = load_broken(folder, meta)
    assert "frame 2" in msg and "'transform_matrix'" in msg and "not a rigid transform" in msg


def test_malformed_pose_shape(tmp_path):
    folder, meta = scene(tmp_path)
    meta["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    assert "'transform_matrix' must be 4x4" in load_broken(folder, meta)


@pytest.mark.parametrize("t", [1.5, -0.1])
def test_time_outside_unit_interval(tmp_path, t):
    folder, meta = scene(tmp_path)
    meta["frames"][1]["time"] = t
    msg = load_broken(folder, meta)
    assert "frame 1" in msg and "'time'" in msg and "outside [0, 1]" in msg


def test_empty_capture(tmp_path):
    folder, meta = scene(tmp_path)
    meta["frames"] = []
    assert "empty" in load_broken(folder, meta)
    with pytest.raises(CaptureError, match="empty"):
        Capture(images=np.zeros((0, 4, 4, 3), np.uint8), c2w=np.zeros((0, 4, 4)), intrinsics=[], times=np.zeros(0))


def test_malformed_json(tmp_path):
    (tmp_path / "transforms.json").write_text("{ not json")
    with pytest.raises(CaptureError, match="transforms.json: not a readable JSON"):
        load_capture(tmp_path)


def test_unknown_split_name(tmp_path):
    folder, meta = scene(tmp_path)
    meta["val_filenames"] = ["images/9.png"]
    assert "'val_filenames' names 'images/9.png'" in load_broken(folder, meta)


def test_mismatched_w_h(tmp_path):
    folder, meta = scene(tmp_path)
    meta.update(w=20, h=6)  # image is 8x6: not a uniform downscale
    assert "field 'w/h' = 20x6 does not match the image size 8x6" in load_broken(folder, meta)


def test_not_a_capture(tmp_path):
    with pytest.raises(CaptureError, match="not a capture"):
        load_capture(tmp_path)
    with pytest.raises(CaptureError, match="no such file"):
        load_capture(tmp_path / "nothing")


def test_dnerf_missing_camera_angle(tmp_path):
    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(CaptureError, match=r"transforms_train.json: missing key 'camera_angle_x'"):
        load_dnerf(tmp_path)
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": []}))
    with pytest.raises(CaptureError, match="empty"):
        load_dnerf(tmp_path)


def test_dnerf_npz_missing_array(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((2, 4, 4, 3), np.float32), poses=np.tile(np.eye(4), (2, 1, 1)), times=np.zeros(2))
    with pytest.raises(CaptureError, match=r"bad.npz: missing key 'focal'"):
        load_dnerf_npz(path)


def test_llff_non_rigid_and_missing_videos(tmp_path):
    from loopnerf.data.llff import opengl_to_llff

    c2w = np.tile(np.eye(4), (2, 1, 1))
    rows = opengl_to_llff(c2w, np.array([[16, 16, 10.0]] * 2), np.array([[1.0, 2.0]] * 2))
    np.save(tmp_path / "poses_bounds.npy", rows)
    with pytest.raises(CaptureError, match="no videos found"):
        load_llff(tmp_path)
    rows[1, 0] = 3.0
    np.save(tmp_path / "poses_bounds.npy", rows)
    with pytest.raises(CaptureError, match=r"poses_bounds.npy: view 1: field 'pose'.*not a rotation"):
        load_llff(tmp_path)


def test_errors_are_loopnerf_errors():
    assert issubclass(CaptureError, LoopNeRFError)


def test_cli_info_bad_path_exits_cleanly(tmp_path, capsys):
    folder, meta = scene(tmp_path)
    meta["frames"][0]["time"] = 3.0
    (folder / "transforms.json").write_text(json.dumps(meta))
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "loopnerf info: error:" in err and "'time'" in err and "Traceback" not in err


def test_cli_info_subprocess_no_traceback(tmp_path):
    """The installed console path, as a user runs it: exit code 2, message, no traceback."""
    bad = tmp_path / "not_here"
    proc = subprocess.run([sys.executable, "-m", "loopnerf.cli", "info", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not_here: no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "junk.txt").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "loopnerf.cli", "info", str(tmp_path / "junk.txt")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a capture, checkpoint or .loop file" in proc.stderr
    assert "Traceback" not in proc.stderr
