"""`loopnerf process`: a real handheld clip becomes a posed capture the pipeline takes;
the pieces (sharpness, frame sampling, pose conversion, world normalisation, intrinsics)
give known answers; a blank wall fails with advice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycolmap")

from conftest import SHARED_DATA
from loopnerf.errors import CaptureError
from loopnerf.process.command import frame_times, intrinsics_from_camera, process_video
from loopnerf.process.frames import sample_frame
from loopnerf.process.sharpness import blurry_frames, laplacian_variance
from loopnerf.process.world_frame import (
    CAMERA_DISTANCE,
    apply_transform,
    box_from_points,
    normalising_transform,
    opencv_w2c_to_opengl_c2w,
)

REALSHORT = SHARED_DATA / "realshort.mp4"


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def textured_image(rng, h=96, w=128) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return (np.clip(gaussian_filter(rng.random((h, w, 3)), (1.0, 1.0, 0)) * 2 - 0.5, 0, 1) * 255).astype(np.uint8)


# ------------------------------------------------------------------ pieces
def test_laplacian_variance_known_answers():
    flat = np.full((20, 30, 3), 77, np.uint8)
    assert laplacian_variance(flat) == 0.0
    # a vertical ramp has zero Laplacian; a checkerboard of 0/1 (x255) has Laplacian +-4*255
    ramp = np.repeat(np.arange(20, dtype=np.float32)[:, None] / 40, 30, axis=1)
    assert laplacian_variance(ramp) == pytest.approx(0.0, abs=1e-6)
    checker = (np.indices((20, 30)).sum(0) % 2).astype(np.float32)
    assert laplacian_variance(checker) == pytest.approx((4 * 255.0) ** 2, rel=1e-5)


def test_blurry_frames_are_the_blurred_ones():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    frames = [textured_image(rng) for _ in range(30)]
    blurred = {4, 11, 12, 25}
    for i in blurred:
        frames[i] = gaussian_filter(frames[i], (2.0, 2.0, 0))
    sharp = np.array([laplacian_variance(f) for f in frames])
    assert set(np.where(blurry_frames(sharp, ratio=0.5))[0]) == blurred
    assert not blurry_frames(np.zeros(10)).any()  # a plain clip: nothing is blurrier than its neighbours


def test_sample_frame_rates():
    keep = [i for i in range(30) if sample_frame(i, 30.0, 10.0)]
    assert keep == list(range(0, 30, 3))
    assert all(sample_frame(i, 30.0, None) and sample_frame(i, 30.0, 60.0) for i in range(10))
    keep = [i for i in range(300) if sample_frame(i, 29.97, 2.0)]
    assert len(keep) == pytest.approx(300 / 29.97 * 2.0, abs=1)
    np.testing.assert_allclose(frame_times(np.array([3, 5, 9]), 3, 9), [0.0, 1 / 3, 1.0])


def test_opencv_w2c_to_opengl_c2w_projects_consistently():
    """A point COLMAP projects to pixel (u, v) lies on LoopNeRF's ray through (u, v)."""
    from loopnerf.data.capture import Intrinsics

    rng = np.random.default_rng(1)
    k = Intrinsics(50.0, 50.0, 16.0, 12.0, 32, 24)
    for _ in range(5):
        r = random_rotation(rng)
        t = rng.normal(size=3)
        x_cam = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3), rng.uniform(2, 5)])
        x_world = r.T @ (x_cam - t)
        u = k.fx * x_cam[0] / x_cam[2] + k.cx  # COLMAP: pixel centres at +0.5, like LoopNeRF
        v = k.fy * x_cam[1] / x_cam[2] + k.cy
        c2w = opencv_w2c_to_opengl_c2w(np.concatenate([r, t[:, None]], 1)[None])[0]
        np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
        d_cam = np.array([(u - k.cx) / k.fx, -(v - k.cy) / k.fy, -1.0])  # ARCHITECTURE.md convention
        d = c2w[:3, :3] @ d_cam
        o = c2w[:3, 3]
        s = (x_world - o) @ d / (d @ d)
        np.testing.assert_allclose(o + s * d, x_world, atol=1e-9)
        assert s > 0


def test_normalising_transform_of_a_converging_orbit():
    rng = np.random.default_rng(2)
    # a level orbit of radius 3 looking at (0, 0, 0) with +Y up, 60 degrees of azimuth
    c2w = []
    for az in np.radians(np.linspace(-30, 30, 12)):
        pos = 3 * np.array([np.sin(az), 0.0, np.cos(az)])
        z = pos / np.linalg.norm(pos)
        x = np.cross([0, 1, 0], z)
        x /= np.linalg.norm(x)
        m = np.eye(4)
        m[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        m[:3, 3] = pos
        c2w.append(m)
    c2w = np.stack(c2w)
    pts = rng.normal(scale=0.3, size=(100, 3))
    # scramble it by a random similarity, as COLMAP's arbitrary world would
    sim = np.eye(4)
    sim[:3, :3] = 0.37 * random_rotation(rng)
    sim[:3, 3] = rng.normal(size=3) * 5
    c2w_s, pts_s = apply_transform(sim, c2w, pts)
    m = normalising_transform(c2w_s, pts_s)
    c2w_n, pts_n = apply_transform(m, c2w_s, pts_s)
    # back to the original frame, at the chosen scale
    dist = np.linalg.norm(c2w_n[:, :3, 3], axis=1)
    assert np.median(dist) == pytest.approx(CAMERA_DISTANCE)
    np.testing.assert_allclose(c2w_n[:, :3, 3] * (3 / CAMERA_DISTANCE), c2w[:, :3, 3], atol=1e-9)
    np.testing.assert_allclose(c2w_n[:, :3, :3], c2w[:, :3, :3], atol=1e-9)
    box = box_from_points(pts_n)
    assert (box[0] < np.median(pts_n, 0)).all() and (box[1] > np.median(pts_n, 0)).all()


def test_intrinsics_from_colmap_cameras():
    k, dist = intrinsics_from_camera({"f": 280.0, "cx": 160.0, "cy": 120.0, "k": -0.05}, 320, 240)
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (280.0, 280.0, 160.0, 120.0, 320, 240)
    assert dist == {"k1": -0.05}
    k, dist = intrinsics_from_camera(
        {"fx": 300.0, "fy": 310.0, "cx": 100.0, "cy": 80.0, "k1": 0.1, "k2": -0.02, "p1": 0.001, "p2": 0.002}, 200, 160
    )
    assert (k.fx, k.fy) == (300.0, 310.0) and dist == {"k1": 0.1, "k2": -0.02, "p1": 0.001, "p2": 0.002}
    k, dist = intrinsics_from_camera({"fx": 300.0, "fy": 300.0, "cx": 100.0, "cy": 80.0}, 200, 160)
    assert dist == {}


# ------------------------------------------------------------------ end to end
def test_blank_wall_fails_with_advice(tmp_path):
    from loopnerf.video import write_video

    rng = np.random.default_rng(3)
    h, w = 120, 160
    wall = np.full((h, w, 3), 200.0) + np.linspace(-6, 6, w)[None, :, None]  # a smooth light gradient
    frames = [np.clip(wall + rng.normal(0, 0.3), 0, 255).astype(np.uint8) for _ in range(20)]
    video = write_video(tmp_path / "wall.mp4", frames, fps=10)
    with pytest.raises(CaptureError) as err:
        process_video(video, tmp_path / "cap", threads=1, quiet=True)
    msg = str(err.value)
    assert "wall.mp4" in msg and "only 0 of 20 frames" in msg and "--fps" in msg and "texture" in msg
    assert not (tmp_path / "cap" / "transforms.json").exists()
    assert not (tmp_path / "cap" / ".process_tmp").exists()  # scratch files are cleaned up


def check_realshort_capture(out: Path, expected_frames: int, summary: dict) -> None:
    """The properties a real handheld arc must have once processed."""
    from loopnerf.data import load_capture

    assert summary["frames_extracted"] == expected_frames
    assert summary["frames_registered"] >= 0.8 * expected_frames
    assert summary["mean_reprojection_error_px"] < 1.5
    assert summary["warnings"] == [], summary["warnings"]  # a phone-like field of view, mild distortion
    cap = load_capture(out)
    assert len(cap) == summary["frames_registered"]
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and "k1" in meta  # SIMPLE_RADIAL's k, undistorted on load
    # time = original frame index / index of the last extracted frame: frames that did
    # not register leave gaps instead of shifting the clock
    idx = np.array(meta["loopnerf_process"]["frame_index"])
    assert (np.diff(idx) > 0).all()
    first, last = summary["clip_frames"]
    assert first == 0 and last >= 33  # the clip's 36 frames are all covered
    np.testing.assert_allclose(cap.times, (idx - first) / (last - first), atol=1e-12)
    # smooth arc: no step between consecutive frames is far longer than the typical one,
    # and the centres follow a quadratic curve in time (an arc) up to hand shake that is
    # small next to the distance the curve covers
    c = cap.camera_centers()
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert steps.max() < 4.0 * np.median(steps)
    basis = np.stack([np.ones_like(cap.times), cap.times, cap.times**2], 1)
    coef = np.linalg.lstsq(basis, c, rcond=None)[0]
    shake = np.linalg.norm(c - basis @ coef, axis=1)
    chord = np.linalg.norm(basis[-1] @ coef - basis[0] @ coef)
    assert np.sqrt((shake**2).mean()) < 0.15 * chord and shake.max() < 0.3 * chord
    # every camera looks at the scene centre (the origin of the normalised world) and it
    # lies in front of them, inside the scene box
    fwd = -cap.c2w[:, :3, 2]
    to_centre = -c / np.linalg.norm(c, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip((fwd * to_centre).sum(1), -1, 1)))
    assert angles.max() < 10.0
    box = cap.scene_box()
    assert (box[0] < 0).all() and (box[1] > 0).all()
    # the sparse model's world was only moved by a similarity: up is +Y on average
    assert cap.c2w[:, :3, 1].mean(0)[1] > 0.95
    assert (out / "camera_path.png").is_file() and (out / "colmap" / "sparse" / "0").is_dir()


def tiny_fit(out: Path, tmp: Path) -> dict:
    from loopnerf.data import load_capture
    from loopnerf.model.config import preset
    from loopnerf.model.train import Stage1Trainer

    cap = load_capture(out, downscale=4)
    cfg = preset("tiny")
    cfg.train.steps = 20
    result = Stage1Trainer(cap, cfg, tmp, {"capture": str(out)}, quiet=True).run()
    assert math.isfinite(result["psnr"]) and result["psnr"] > 5.0
    assert (tmp / "stage1" / "model.safetensors").is_file()
    return result


@pytest.mark.shared_data("realshort.mp4")
def test_realshort_every_other_frame(tmp_path):
    """The real clip at 15 fps (18 frames of the arc): fast enough for every run."""
    out = tmp_path / "cap"
    res = process_video(REALSHORT, out, fps=15, threads=1, quiet=True)
    check_realshort_capture(out, 18, res.summary)
    tiny_fit(out, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.shared_data("realshort.mp4")
def test_realshort_all_frames(tmp_path):
    out = tmp_path / "cap"
    res = process_video(REALSHORT, out, threads=1, quiet=True)
    check_realshort_capture(out, 36, res.summary)
    tiny_fit(out, tmp_path / "run")


def test_downscale_frame_averages_blocks():
    from loopnerf.process.frames import downscale_frame

    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, size=(9, 13, 3), dtype=np.uint8)  # not a multiple of 2: edges dropped
    out = downscale_frame(img, 2)
    ref = img[:8, :12].reshape(4, 2, 6, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert np.abs(out - ref).max() <= 0.5
    assert downscale_frame(img, 1) is img


def test_extract_frames_streams(tmp_path):
    """Extraction decodes one frame at a time and keeps only the selected, downscaled
    frames on disk: its peak Python memory stays a few frames' worth however long the
    video is (here 90 frames of 480 x 320, 41 MB decoded; about 5 frames are alive at
    once: ffmpeg's pipe buffer, imageio's copy, the previous frame and the downscale's
    integer sums), and the kept frames are the sampled ones, downscaled by block
    averaging."""
    import tracemalloc

    import imageio.v3 as iio

    from loopnerf.process.frames import downscale_frame, extract_frames
    from loopnerf.video import write_video

    rng = np.random.default_rng(5)
    base = textured_image(rng, 320, 480)
    frames = [np.roll(base, 2 * i, axis=1) for i in range(90)]
    video = write_video(tmp_path / "pan.mp4", frames, fps=30)
    frame_bytes = base.nbytes
    extract_frames(video, tmp_path / "warm", max_frames=1)  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        ex = extract_frames(video, tmp_path / "frames", fps=5, downscale=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ex.video_frames == 90 and ex.frame_index.tolist() == list(range(0, 90, 6))
    assert (ex.width, ex.height, ex.source_size) == (240, 160, (480, 320))
    assert peak < 8 * frame_bytes, f"peak {peak / 2**20:.1f} MiB for {frame_bytes / 2**20:.2f} MiB frames"
    # the written frames are the decoded ones, downscaled
    decoded = [f for i, f in enumerate(iio.imiter(video, plugin="FFMPEG")) if i in (0, 42)]
    for name, full in zip([ex.names[0], ex.names[7]], decoded):
        np.testing.assert_array_equal(iio.imread(tmp_path / "frames" / name), downscale_frame(full[..., :3], 2))


def test_implausible_intrinsics_are_flagged():
    from loopnerf.process.command import intrinsics_warnings

    # realshort.mp4 at its full size: 57.5 deg, small distortion -> nothing to say
    assert intrinsics_warnings(57.5, {"k1": -0.05}) == []
    # realshort at --fps 15 --downscale 2: 13/18 frames "registered" with a 15.5 deg
    # field of view and k1 = 4.83, a degenerate reconstruction
    w = intrinsics_warnings(15.5, {"k1": 4.83})
    assert len(w) == 2 and "15.5 deg" in w[0] and "k1 = 4.83" in w[1]
    assert len(intrinsics_warnings(140.0, {})) == 1
