"""LLFF / VideoLoop3D importer on a small generated scene (poses_bounds.npy + videos)."""

import imageio.v3 as iio
import numpy as np
import pytest

from loopnerf.data.llff import llff_to_opengl, load_llff, opengl_to_llff
from loopnerf.data.load import capture_format, load_capture

W, H, FOCAL = 64, 32, 20.0
FRAMES = (5, 3)  # frames per view


def make_scene(folder, video_size=(W, H), views_dir="videos_1"):
    """Two views: camera 0 at the origin looking down -Z (OpenGL identity), camera 1
    moved +1 along x and turned 90 degrees about +Y. Each video's frames have a
    constant grey level that encodes (view, frame)."""
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[1, :3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # rotation of 90 deg about +Y
    c2w[1, :3, 3] = [1.0, 0.0, 0.0]
    hwf = np.array([[H, W, FOCAL]] * 2, dtype=np.float64)
    bounds = np.array([[1.0, 4.0], [2.0, 3.0]])
    np.save(folder / "poses_bounds.npy", opengl_to_llff(c2w, hwf, bounds))
    (folder / views_dir).mkdir()
    for v, n in enumerate(FRAMES):
        frames = np.stack([np.full((video_size[1], video_size[0], 3), 40 + 100 * v + 20 * j, np.uint8) for j in range(n)])
        iio.imwrite(folder / views_dir / f"cam{v:02d}.mp4", frames, fps=10)
    return c2w, bounds


def test_llff_axes_to_opengl():
    # LLFF columns (down, right, back) of an upright camera looking down -Z
    row = np.zeros((1, 17))
    m = np.zeros((3, 5))
    m[:, 0] = [0, -1, 0]  # down = -Y
    m[:, 1] = [1, 0, 0]  # right = +X
    m[:, 2] = [0, 0, 1]  # back = +Z
    m[:, 3] = [1, 2, 3]
    m[:, 4] = [H, W, FOCAL]
    row[0, :15] = m.reshape(-1)
    row[0, 15:] = [0.5, 9.0]
    c2w, hwf, bds = llff_to_opengl(row)
    expect = np.eye(4)
    expect[:3, 3] = [1, 2, 3]
    assert np.allclose(c2w[0], expect)
    assert hwf[0].tolist() == [H, W, FOCAL] and bds[0].tolist() == [0.5, 9.0]
    assert np.allclose(opengl_to_llff(c2w, hwf, bds), row)


def test_load_stitches_views_back_to_back(tmp_path):
    c2w, bounds = make_scene(tmp_path)
    assert capture_format(tmp_path) == "llff"
    cap = load_capture(tmp_path)
    n = sum(FRAMES)
    assert len(cap) == n and cap.images.shape[1:] == (H, W, 3)
    assert np.allclose(cap.times, np.arange(n) / n)
    assert cap.meta["view_of_frame"] == [0] * 5 + [1] * 3 and cap.meta["view_starts"] == [0, 5]
    assert np.allclose(cap.c2w[:5], c2w[0]) and np.allclose(cap.c2w[5:], c2w[1])
    # frame order inside the stitched video follows the videos (grey level encodes it)
    grey = cap.images_float()[:, H // 2, W // 2, 0] * 255
    expect = [40 + 100 * v + 20 * j for v, k in enumerate(FRAMES) for j in range(k)]
    assert np.abs(grey - expect).max() < 4
    k = cap.intrinsics[0]
    assert (k.fx, k.fy, k.cx, k.cy) == (FOCAL, FOCAL, W / 2, H / 2)
    assert cap.eval_idx.tolist() == [5] and len(cap.train_idx) == n - 1


def test_scene_box_holds_the_frustums(tmp_path):
    make_scene(tmp_path)
    cap = load_llff(tmp_path)
    # camera 0 at the origin looks down -Z, near 1, far 4: far corners at z = -4,
    # x = +-4 * (W/2)/f = +-6.4, y = +-4 * (H/2)/f = +-3.2. Camera 1 at x = 1 looks down
    # +X with its right axis along -Z, far 3: corners at x = 4, z = +-3 * 1.6 = +-4.8.
    assert np.allclose(cap.box, [[-6.4, -3.2, -4.8], [6.4, 3.2, 4.8]])


def test_half_size_videos_scale_focal_and_holdout_view(tmp_path):
    make_scene(tmp_path, video_size=(W // 2, H // 2), views_dir="videos")
    cap = load_llff(tmp_path, holdout_view=1, frame_step=2)
    assert cap.images.shape[1:] == (H // 2, W // 2, 3)
    assert cap.intrinsics[0].fx == pytest.approx(FOCAL / 2)
    assert cap.meta["view_of_frame"] == [0, 0, 0, 1, 1]  # every 2nd frame of 5 and 3
    assert cap.eval_idx.tolist() == [3, 4] and cap.train_idx.tolist() == [0, 1, 2]


def test_downscale_on_load(tmp_path):
    make_scene(tmp_path)
    cap = load_capture(tmp_path, downscale=2)
    assert cap.images.shape[1:] == (H // 2, W // 2, 3) and cap.intrinsics[0].fx == pytest.approx(FOCAL / 2)
