"""Camera files: nerfstudio-style `transforms.json` without images.

`loopnerf render --cameras FILE` reads one: frames with `transform_matrix`
(camera-to-world, OpenGL), intrinsics (`fl_x`, `fl_y`, `cx`, `cy`, `w`, `h`, global or
per frame, or `camera_angle_x`) and `time` (capture time in [0, 1] for stage-1
renders; loop phase in [0, 1) for loops). A capture's own transforms.json is a valid
camera file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loopnerf.data.capture import Intrinsics, check_rigid
from loopnerf.data.nerfstudio import frame_list, intrinsics_of, parse_number, parse_pose, read_json
from loopnerf.errors import CaptureError


@dataclass
class CameraSet:
    """c2w [N, 4, 4] float64, intrinsics (N `Intrinsics`), times [N] in [0, 1]."""

    c2w: np.ndarray
    intrinsics: list
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.c2w)


def load_cameras(path) -> CameraSet:
    """Read a camera file; `CaptureError` naming the file and field on bad input."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    meta = read_json(path)
    frames = frame_list(meta, str(path))
    if not frames:
        raise CaptureError(f"{path}: field 'frames' holds no camera")
    c2w, intr, times = [], [], []
    for i, fr in enumerate(frames):
        where = f"{path}: frame {i}"
        if "transform_matrix" not in fr:
            raise CaptureError(f"{where}: missing key 'transform_matrix'")
        c2w.append(parse_pose(fr["transform_matrix"], where))
        w = fr.get("w", meta.get("w"))
        h = fr.get("h", meta.get("h"))
        if w is None or h is None:
            raise CaptureError(f"{where}: missing key 'w'/'h' (image size in pixels)")
        w, h = int(parse_number(w, where, "w")), int(parse_number(h, where, "h"))
        intr.append(intrinsics_of(fr, meta, w, h, where))
        t = fr.get("time", i / max(len(frames) - 1, 1))
        times.append(parse_number(t, where, "time"))
    c2w = np.stack(c2w)
    bad = np.where(~np.isfinite(c2w).all(axis=(1, 2)))[0]
    if len(bad):
        raise CaptureError(f"{path}: frame {bad[0]}: field 'transform_matrix' is not finite")
    check_rigid(c2w, str(path))
    times = np.asarray(times, dtype=np.float64)
    bad = np.where((times < 0) | (times > 1) | ~np.isfinite(times))[0]
    if len(bad):
        raise CaptureError(f"{path}: frame {bad[0]}: field 'time' = {times[bad[0]]} is outside [0, 1]")
    return CameraSet(c2w, intr, times)


def write_cameras(path, c2w, intrinsics, times) -> Path:
    """Write a camera file (per-frame intrinsics) that `load_cameras` reads back."""
    frames = []
    for m, k, t in zip(np.asarray(c2w), intrinsics, np.asarray(times)):
        frames.append({
            "transform_matrix": np.asarray(m, dtype=np.float64).tolist(),
            "fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy, "w": int(k.width), "h": int(k.height),
            "time": float(t),
        })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}, indent=1))
    return path
