"""Interactive camera of the viewer, and the camera paths of headless renders.

All poses are camera-to-world 4x4 matrices with OpenGL axes (the camera looks down its
-Z axis, +Y is up, +X right). Pure numpy: no window needed, so headless renders, the
benchmark and the tests share the exact cameras the window uses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from loopnerf.errors import ConfigError


def rotation_about(axis, angle: float) -> np.ndarray:
    """[3, 3] rotation by `angle` radians about the unit vector `axis` (right-handed)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / max(np.linalg.norm(a), 1e-12)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def orbit_pivot(c2w: np.ndarray, box) -> tuple[np.ndarray, float]:
    """The point the default camera orbits about and its distance from the camera.

    The pivot is the point of the camera's optical axis closest to the scene box's
    centre (so orbiting keeps the scene in view); its distance is at least a tenth of
    the box diagonal. Returns (pivot [3] world, distance along the view direction).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    lo, hi = np.asarray(box[0], dtype=np.float64), np.asarray(box[1], dtype=np.float64)
    centre = 0.5 * (lo + hi)
    eye = c2w[:3, 3]
    forward = -c2w[:3, 2] / np.linalg.norm(c2w[:3, 2])
    dist = max(float(np.dot(centre - eye, forward)), 0.1 * float(np.linalg.norm(hi - lo)))
    return eye + dist * forward, dist


class OrbitCamera:
    """Orbit / pan / zoom about a pivot, starting from (and resettable to) a pose.

    State: pivot [3] (world), rotation [3, 3] (camera axes in world, columns = right,
    up, back) and distance from the pivot (world units). The camera sits at
    pivot + distance * back and looks at the pivot.

    Args:
        c2w: [4, 4] start pose (the .loop's default camera).
        box: scene box ((xmin, ymin, zmin), (xmax, ymax, zmax)) for the pivot.
        up: world up vector; horizontal drags turn about it.
    """

    def __init__(self, c2w, box, up=(0.0, 1.0, 0.0)):
        self._home = np.asarray(c2w, dtype=np.float64).copy()
        self._box = box
        self.up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
        self.reset()

    def reset(self) -> None:
        """Back to the start pose."""
        self.pivot, self.distance = orbit_pivot(self._home, self._box)
        r = self._home[:3, :3]
        self.rotation = r / np.linalg.norm(r, axis=0, keepdims=True)

    def c2w(self) -> np.ndarray:
        """[4, 4] float32 camera-to-world of the current state."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.pivot + self.distance * self.rotation[:, 2]
        return m.astype(np.float32)

    def orbit(self, yaw: float, pitch: float) -> None:
        """Turn about the pivot: `yaw` radians about the world up, `pitch` radians
        about the camera's right axis (positive pitch lifts the camera)."""
        r_pitch = rotation_about(self.rotation[:, 0], -pitch)
        new = rotation_about(self.up, yaw) @ r_pitch @ self.rotation
        # Refuse to pitch over the pole (the image would flip upside down).
        if abs(float(np.dot(new[:, 2], self.up))) < 0.995:
            self.rotation = new
        else:
            self.rotation = rotation_about(self.up, yaw) @ self.rotation

    def pan(self, dx: float, dy: float) -> None:
        """Move the pivot in the image plane by (dx, dy) units of the pivot distance
        (positive dx: the scene moves right on screen; positive dy: it moves up)."""
        self.pivot = self.pivot - self.distance * (dx * self.rotation[:, 0] + dy * self.rotation[:, 1])

    def zoom(self, factor: float) -> None:
        """Multiply the distance to the pivot by `factor` (< 1 moves closer)."""
        self.distance = float(np.clip(self.distance * factor, 1e-3, 1e4))


def orbit_path(c2w, box, up, n: int, degrees: float = 25.0) -> np.ndarray:
    """[n, 4, 4] float32 poses swinging about the scene: yaw = degrees * sin(2 pi i / n)
    about the world up through the pivot, with a gentle elevation change, so the path
    is periodic (pose n is pose 0) and stays near the default view (forward-facing
    captures have nothing behind them)."""
    cam = OrbitCamera(c2w, box, up)
    poses = []
    for i in range(n):
        cam.reset()
        a = 2 * math.pi * i / max(n, 1)
        cam.orbit(math.radians(degrees) * math.sin(a), math.radians(0.3 * degrees) * (1 - math.cos(a)) * 0.5)
        poses.append(cam.c2w())
    return np.stack(poses)


def load_camera_path(path: str | Path) -> np.ndarray:
    """Poses [N, 4, 4] float32 from a file: `.npy` ([N, 4, 4] or [N, 3, 4]) or `.json`
    (a list of 4x4 matrices, or {"frames": [{"c2w" or "transform_matrix": 4x4}, ...]}).
    Raises ConfigError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"camera path file {path}: no such file")
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                frames = data.get("frames")
                if not isinstance(frames, list):
                    raise ConfigError(f"camera path file {path}: expected a list of poses or a 'frames' list")
                data = [f.get("c2w", f.get("transform_matrix")) if isinstance(f, dict) else f for f in frames]
            arr = np.asarray(data, dtype=np.float64)
    except (ValueError, OSError, TypeError) as err:
        raise ConfigError(f"camera path file {path}: cannot read poses ({err})") from err
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1:] not in ((4, 4), (3, 4)):
        raise ConfigError(f"camera path file {path}: poses must be [N, 4, 4] or [N, 3, 4], got shape {list(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"camera path file {path}: poses hold non-finite values")
    if arr.shape[1] == 3:
        arr = np.concatenate([arr, np.broadcast_to([[[0, 0, 0, 1]]], (arr.shape[0], 1, 4))], axis=1)
    return arr.astype(np.float32)
