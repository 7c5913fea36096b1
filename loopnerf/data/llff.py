"""LLFF / VideoLoop3D captures: `poses_bounds.npy` + one video per view.

Layout (VideoLoop3D's multi-view video scenes, `load_mv_videos`):
```
scene/poses_bounds.npy    [V, 17]: per view a 3x5 matrix (row-major) + near, far
scene/videos_1/*.mp4      one video per view, sorted by name = row order of the npy
```
`videos_1/` is searched first, then `videos/`, then other `videos_*/` folders, then
video files lying in the scene folder itself (or pass `videos=`).

The 3x5 matrix of a view is [R | t | hwf]: R's columns are the camera's
(down, right, back) axes in world coordinates, t the camera centre, hwf = (image
height, width, focal length in pixels). OpenGL axes are (right, up, back) =
(col 1, -col 0, col 2). If the video frames are smaller than (h, w) (a
downscaled `videos_N` folder), the focal length is scaled to the frames. Principal
point: the image centre.

Stitching (LoopNeRF report §4.3): the views' videos are concatenated back to back
into one "monocular" video of N frames (view 0's frames, then view 1's, ...), each
frame keeping its view's pose; stitched frame i has time i / N. Every view is a
still stretch of the camera path, so the selection stage finds them again.

Scene box: the bounding box of every view's viewing frustum between its near and
far bound (the `bds` columns), i.e. the region the views can see.

Split: every 10th stitched frame from frame 5 held out (as in the nerfstudio
importer), or a whole view with `holdout_view`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.data.images import shrink, stack_frames, to_float
from loopnerf.data.nerfstudio import default_split
from loopnerf.data.progress import track_frames
from loopnerf.errors import CaptureError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")


def llff_to_opengl(poses_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[V, 17] poses_bounds rows -> (c2w [V, 4, 4] OpenGL, hwf [V, 3], bounds [V, 2])."""
    m = poses_bounds[:, :15].reshape(-1, 3, 5)
    r, t, hwf = m[:, :, :3], m[:, :, 3], m[:, :, 4]
    c2w = np.tile(np.eye(4), (len(m), 1, 1))
    c2w[:, :3, 0] = r[:, :, 1]  # right
    c2w[:, :3, 1] = -r[:, :, 0]  # up = -down
    c2w[:, :3, 2] = r[:, :, 2]  # back
    c2w[:, :3, 3] = t
    return c2w, hwf, poses_bounds[:, 15:17]


def opengl_to_llff(c2w: np.ndarray, hwf: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Inverse of `llff_to_opengl`: [V, 4, 4], [V, 3], [V, 2] -> [V, 17] rows."""
    m = np.zeros((len(c2w), 3, 5))
    m[:, :, 0] = -c2w[:, :3, 1]
    m[:, :, 1] = c2w[:, :3, 0]
    m[:, :, 2] = c2w[:, :3, 2]
    m[:, :, 3] = c2w[:, :3, 3]
    m[:, :, 4] = hwf
    return np.concatenate([m.reshape(-1, 15), bounds], axis=1)


def find_videos(folder: Path) -> list[Path]:
    """The per-view video files of a scene folder, in view order (sorted names)."""

    def videos_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)

    candidates = [folder / "videos_1", folder / "videos"]
    candidates += sorted(d for d in folder.glob("videos_*") if d.is_dir() and d not in candidates)
    for d in candidates:
        if d.is_dir():
            found = videos_in(d)
            if found:
                return found
    return videos_in(folder)


def read_video(path: Path, *, referenced_by: str, frame_step: int = 1, max_frames: Optional[int] = None) -> list:
    """Frames of a video file as a list of [H, W, 3] uint8 arrays."""
    import imageio.v3 as iio

    frames = []
    try:
        for j, frame in enumerate(iio.imiter(path)):
            if j % frame_step:
                continue
            frames.append(np.asarray(frame)[..., :3])
            if max_frames is not None and len(frames) >= max_frames:
                break
    except Exception as err:  # ffmpeg / decoder errors
        raise CaptureError(f"{referenced_by}: cannot read video {path}: {err}") from None
    if not frames:
        raise CaptureError(f"{referenced_by}: video {path} has no frames")
    return frames


def frustum_box(c2w: np.ndarray, intrinsics: list, bounds: np.ndarray) -> np.ndarray:
    """[2, 3] bounding box of every camera's frustum between its near and far depth.

    c2w: [V, 4, 4] OpenGL; bounds: [V, 2] (near, far) depths along the view axis.
    """
    pts = []
    for pose, k, (near, far) in zip(c2w, intrinsics, bounds):
        for u, v in ((0, 0), (k.width, 0), (0, k.height), (k.width, k.height)):
            d = np.array([(u - k.cx) / k.fx, -(v - k.cy) / k.fy, -1.0])
            for depth in (near, far):
                pts.append(pose[:3, :3] @ (d * depth) + pose[:3, 3])
    pts = np.asarray(pts)
    return np.stack([pts.min(0), pts.max(0)])


def load_llff(
    path,
    downscale: float = 1,
    videos: Optional[Sequence] = None,
    frame_step: int = 1,
    max_frames_per_view: Optional[int] = None,
    holdout_view: Optional[int] = None,
    box: Optional[Sequence[Sequence[float]]] = None,
) -> Capture:
    """Load an LLFF / VideoLoop3D scene: one still-camera video per view, stitched.

    Args:
        path: the scene folder (holding `poses_bounds.npy`) or the npy file itself.
        downscale: shrink frames by this factor on load (area resampling).
        videos: the video files in view order (default: `find_videos`).
        frame_step: keep every `frame_step`-th frame of each video.
        max_frames_per_view: keep at most this many frames of each video.
        holdout_view: hold out this whole view (index into the views) instead of
            every 10th frame.
        box: explicit [2, 3] scene box (world units) instead of the frustum box.
    Returns: a `Capture` of the stitched video (time i / N for stitched frame i).
    Raises: `CaptureError` naming the file and field at fault.
    """
    path = Path(path)
    npy = path if path.is_file() else path / "poses_bounds.npy"
    folder = npy.parent
    src = str(npy)
    if not npy.is_file():
        raise CaptureError(f"{path}: no poses_bounds.npy")
    try:
        pb = np.load(npy, allow_pickle=False)
    except Exception as err:
        raise CaptureError(f"{src}: not a readable .npy file: {err}") from None
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise CaptureError(f"{src}: must be [views, 17] (3x5 pose + near, far), got shape {pb.shape}")
    if len(pb) == 0:
        raise CaptureError(f"{src}: the capture is empty (no views)")
    pb = pb.astype(np.float64)
    if not np.isfinite(pb).all():
        bad = int(np.where(~np.isfinite(pb).all(axis=1))[0][0])
        raise CaptureError(f"{src}: view {bad}: pose or bounds are not finite")
    c2w_views, hwf, bounds = llff_to_opengl(pb)
    if (hwf <= 0).any():
        bad = int(np.where((hwf <= 0).any(axis=1))[0][0])
        raise CaptureError(f"{src}: view {bad}: field 'hwf' (height, width, focal) must be positive")
    if (bounds <= 0).any() or (bounds[:, 1] <= bounds[:, 0]).any():
        bad = int(np.where((bounds <= 0).any(axis=1) | (bounds[:, 1] <= bounds[:, 0]))[0][0])
        raise CaptureError(f"{src}: view {bad}: field 'bds' (near, far) must satisfy 0 < near < far")
    r = c2w_views[:, :3, :3]
    err = np.abs(np.einsum("nij,nkj->nik", r, r) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(r)
    bad = np.where((err > 1e-3) | (np.abs(det - 1) > 1e-3))[0]
    if len(bad):
        v = int(bad[0])
        raise CaptureError(
            f"{src}: view {v}: field 'pose' (rotation columns down, right, back) is not a rotation "
            f"(|R R^T - I| = {err[v]:.3g}, det R = {det[v]:.4f})"
        )
    files = [Path(v) for v in videos] if videos is not None else find_videos(folder)
    if not files:
        raise CaptureError(f"{folder}: no videos found (looked in videos_1/, videos/, videos_*/ and the folder itself)")
    if len(files) != len(pb):
        raise CaptureError(
            f"{src}: {len(pb)} views but {len(files)} videos ({files[0].parent}); one video per view is needed"
        )
    if downscale <= 0 or frame_step < 1:
        raise CaptureError(f"{src}: downscale must be positive and frame_step >= 1")

    images, names, poses, intrinsics, view_of = [], [], [], [], []
    view_k = []
    for v, video in track_frames(enumerate(files), len(files), "loading videos", min_total=2):
        frames = read_video(video, referenced_by=f"{src}: view {v}", frame_step=frame_step, max_frames=max_frames_per_view)
        h, w = frames[0].shape[:2]
        hh, ww, f = hwf[v]
        sx, sy = w / ww, h / hh
        if abs(sx - sy) * max(ww, hh) > 2.0:
            raise CaptureError(
                f"{src}: view {v}: field 'hwf' = {ww:g}x{hh:g} does not match the video size {w}x{h} of {video}"
            )
        k = Intrinsics(f * sx, f * sy, w / 2, h / 2, w, h)
        if downscale != 1:
            frames = [shrink(to_float(fr), downscale) for fr in frames]
            k = k.scaled(1.0 / downscale)
        view_k.append(k)
        for j, fr in enumerate(frames):
            images.append(fr)
            names.append(f"{video.name}[{j}]")
            poses.append(c2w_views[v])
            intrinsics.append(k)
            view_of.append(v)

    n = len(images)
    stacked = stack_frames(images, names, src, field="videos")
    view_of = np.asarray(view_of)
    if holdout_view is not None:
        if not 0 <= holdout_view < len(files):
            raise CaptureError(f"{src}: holdout_view {holdout_view} is not one of the {len(files)} views")
        eval_idx = np.where(view_of == holdout_view)[0]
        train_idx = np.where(view_of != holdout_view)[0]
    else:
        train_idx, eval_idx = default_split(n)
    the_box = np.asarray(box, dtype=np.float64) if box is not None else frustum_box(c2w_views, view_k, bounds)
    starts = [int(np.argmax(view_of == v)) for v in range(len(files))]
    return Capture(
        images=stacked,
        c2w=np.stack(poses),
        intrinsics=intrinsics,
        times=np.arange(n, dtype=np.float64) / n,
        train_idx=train_idx,
        eval_idx=eval_idx,
        box=the_box,
        source=src,
        name=folder.name or "llff",
        meta={
            "format": "llff",
            "videos": [str(f) for f in files],
            "view_of_frame": view_of.tolist(),
            "view_starts": starts,
            "bounds": bounds.tolist(),
        },
    )
