"""nerfstudio importer/writer: round trip, intrinsics, time, split, masks, distortion."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.data.images import undistort_opencv
from loopnerf.data.nerfstudio import load_nerfstudio, write_nerfstudio
from loopnerf.errors import CaptureError


def orbit_poses(n, radius=3.0):
    """[n, 4, 4] OpenGL cameras on a circle looking at the origin."""
    out = []
    for a in np.linspace(0, np.pi / 2, n):
        eye = np.array([radius * np.sin(a), 0.5, radius * np.cos(a)])
        back = eye / np.linalg.norm(eye)
        right = np.cross([0, 1, 0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye
        out.append(m)
    return np.stack(out)


def small_capture(n=12, w=10, h=8, seed=0, masks=False, per_frame_k=False):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    ks = [Intrinsics(12.0 + (i if per_frame_k else 0), 11.0, 5.2, 3.9, w, h) for i in range(n)]
    m = rng.random((n, h, w)) > 0.3 if masks else None
    return Capture(
        images=imgs, c2w=orbit_poses(n), intrinsics=ks, times=np.sort(rng.random(n)), masks=m,
        train_idx=[0, 1, 2, 4, 5], eval_idx=[3, 7], box=np.array([[-1, -2, -1], [1, 1, 3.0]]),
    )


def write_json(folder, meta):
    (folder / "transforms.json").write_text(json.dumps(meta))
    return folder / "transforms.json"


def write_frames(folder, n, w=8, h=6, seed=0):
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(exist_ok=True)
    frames = []
    for i, pose in enumerate(orbit_poses(n)):
        iio.imwrite(folder / "images" / f"f{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": pose.tolist()})
    return frames


def test_round_trip_preserves_everything(tmp_path):
    cap = small_capture(masks=True)
    path = write_nerfstudio(tmp_path, cap, extra={"loopnerf_gt": {"period": 24}})
    meta = json.loads(path.read_text())
    assert meta["camera_model"] == "OPENCV" and meta["fl_x"] == 12.0 and meta["w"] == 10
    assert meta["frames"][0]["file_path"] == "images/00000.png"
    assert meta["val_filenames"] == ["images/00003.png", "images/00007.png"]
    back = load_nerfstudio(path)
    assert np.array_equal(back.images, cap.images)
    assert np.allclose(back.c2w, cap.c2w) and np.allclose(back.times, cap.times)
    assert back.intrinsics == cap.intrinsics
    assert np.array_equal(back.masks, cap.masks)
    assert back.train_idx.tolist() == [0, 1, 2, 4, 5] and back.eval_idx.tolist() == [3, 7]
    assert np.allclose(back.box, cap.box)
    assert back.meta["extra"] == {"loopnerf_gt": {"period": 24}}
    # loading the folder is the same as loading the json
    assert np.array_equal(load_nerfstudio(tmp_path).images, cap.images)


def test_per_frame_intrinsics_round_trip(tmp_path):
    cap = small_capture(per_frame_k=True)
    meta = json.loads(write_nerfstudio(tmp_path, cap).read_text())
    assert "fl_x" not in meta and meta["frames"][3]["fl_x"] == 15.0
    back = load_nerfstudio(tmp_path)
    assert [k.fx for k in back.intrinsics] == [12.0 + i for i in range(12)]


def test_extra_key_clash_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_nerfstudio(tmp_path, small_capture(), extra={"frames": []})


def test_time_from_order_default_split_and_defaults(tmp_path):
    frames = write_frames(tmp_path, 21)
    frames[2]["fl_x"] = 20.0  # per-frame key overrides the global one
    write_json(tmp_path, {"fl_x": 10.0, "frames": frames})
    cap = load_nerfstudio(tmp_path)
    assert np.allclose(cap.times, np.arange(21) / 20)
    assert cap.eval_idx.tolist() == [5, 15]
    assert len(cap.train_idx) == 19 and not set(cap.train_idx) & {5, 15}
    k = cap.intrinsics[0]
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (10.0, 10.0, 4.0, 3.0, 8, 6)
    assert cap.intrinsics[2].fx == 20.0
    assert cap.images.dtype == np.uint8


def test_explicit_times_and_train_only_split(tmp_path):
    frames = write_frames(tmp_path, 4)
    for i, f in enumerate(frames):
        f["time"] = [0.5, 0.0, 1.0, 0.25][i]
    frames[3]["file_path"] = "images/f3"  # without extension: .png is found
    write_json(tmp_path, {"fl_x": 10.0, "frames": frames, "train_filenames": ["./images/f0.png", "images/f2.png"]})
    cap = load_nerfstudio(tmp_path)
    assert cap.times.tolist() == [0.5, 0.0, 1.0, 0.25]
    assert cap.train_idx.tolist() == [0, 2] and cap.eval_idx.tolist() == [1, 3]


def test_intrinsics_scaled_to_downscaled_image_folder(tmp_path):
    frames = write_frames(tmp_path, 2, w=8, h=6)
    write_json(tmp_path, {"fl_x": 40.0, "fl_y": 40.0, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24, "frames": frames})
    k = load_nerfstudio(tmp_path).intrinsics[0]
    assert (k.fx, k.cx, k.cy, k.width) == (10.0, 4.0, 3.0, 8)


def test_downscale_on_load_is_area_average(tmp_path):
    cap = small_capture(w=8, h=6)
    write_nerfstudio(tmp_path, cap)
    half = load_nerfstudio(tmp_path, downscale=2)
    assert half.images.shape == (12, 3, 4, 3) and half.images.dtype == np.float32
    expect = cap.images_float().reshape(12, 3, 2, 4, 2, 3).mean(axis=(2, 4))
    assert np.allclose(half.images, expect, atol=1e-6)
    assert half.intrinsics[0] == cap.intrinsics[0].scaled(0.5)


def test_masks_from_mask_path(tmp_path):
    frames = write_frames(tmp_path, 2)
    mask = np.zeros((6, 8), np.uint8)
    mask[:, :3] = 255
    iio.imwrite(tmp_path / "m0.png", mask)
    frames[0]["mask_path"] = "m0.png"
    write_json(tmp_path, {"fl_x": 10.0, "frames": frames})
    cap = load_nerfstudio(tmp_path)
    assert cap.masks.shape == (2, 6, 8)
    assert cap.masks[0, :, :3].all() and not cap.masks[0, :, 3:].any() and cap.masks[1].all()


def _distort_points(x, y, k1, k2, p1, p2):
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def test_opencv_distortion_is_undistorted_on_load(tmp_path):
    """A smooth pattern photographed through a distorting lens comes back as the ideal
    pinhole image: compare against the pattern evaluated on the pinhole pixel grid."""
    w, h, f, cx, cy = 64, 48, 50.0, 32.3, 23.8
    k1, k2, p1, p2 = -0.2, 0.05, 0.01, -0.005

    def pattern(x, y):  # normalised image coordinates -> RGB in [0, 1]
        return np.stack([0.5 + 0.4 * np.sin(3 * x), 0.5 + 0.4 * np.cos(4 * y), 0.5 + 0.3 * np.sin(2 * x + 3 * y)], -1)

    # distorted image: each distorted pixel sees the scene point whose undistorted
    # coordinates map onto it (invert the model by fixed-point iteration)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xd, yd = (u - cx) / f, (v - cy) / f
    x, y = xd.copy(), yd.copy()
    for _ in range(50):
        fx_, fy_ = _distort_points(x, y, k1, k2, p1, p2)
        x, y = x + (xd - fx_), y + (yd - fy_)
    distorted = pattern(x, y)
    (tmp_path / "images").mkdir()
    iio.imwrite(tmp_path / "images/0.png", (distorted * 255 + 0.5).astype(np.uint8))
    write_json(tmp_path, {
        "camera_model": "OPENCV", "fl_x": f, "fl_y": f, "cx": cx, "cy": cy, "w": w, "h": h,
        "k1": k1, "k2": k2, "p1": p1, "p2": p2,
        "frames": [{"file_path": "images/0.png", "transform_matrix": np.eye(4).tolist()}],
    })
    cap = load_nerfstudio(tmp_path)
    ideal = pattern((u - cx) / f, (v - cy) / f)
    inner = (slice(4, -4), slice(4, -4))
    err = np.abs(cap.images[0][inner] - ideal[inner]).max()
    naive = np.abs(distorted[inner] - ideal[inner]).max()
    print(f"undistortion max error {err:.4f}, without undistortion {naive:.4f}")
    assert err < 0.01, err
    assert naive > 5 * err  # the distortion was really there


def test_undistort_with_zero_coefficients_is_identity():
    img = np.random.default_rng(1).random((9, 7, 3)).astype(np.float32)
    assert np.allclose(undistort_opencv(img, 5.0, 6.0, 3.5, 4.5), img, atol=1e-6)


def test_fisheye_is_rejected(tmp_path):
    frames = write_frames(tmp_path, 2)
    write_json(tmp_path, {"camera_model": "OPENCV_FISHEYE", "fl_x": 10.0, "frames": frames})
    with pytest.raises(CaptureError, match="camera_model.*OPENCV_FISHEYE"):
        load_nerfstudio(tmp_path)
