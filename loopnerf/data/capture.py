"""The `Capture` type: a monocular video's frames with camera poses and times.

Conventions (the whole project uses them):
- poses are camera-to-world 4x4 matrices in the OpenGL convention: the camera looks
  down its -Z axis, +Y is up in the image, +X to the right;
- intrinsics are pinhole, in pixels, for the image size actually stored (after any
  downscaling); the pixel centre of column u is at u + 0.5;
- time is in [0, 1] (0 = first frame of the video, 1 = last).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from loopnerf.errors import CaptureError


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of one frame, in pixels of the stored image."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics for the image resized by `factor` (0.5 = half size)."""
        w = int(round(self.width * factor))
        h = int(round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, w, h)

    KEYS = ("fx", "fy", "cx", "cy", "width", "height")

    def to_dict(self) -> dict:
        """{"fx", "fy", "cx", "cy" (pixels, float), "width", "height" (pixels, int)}: the
        form every JSON file of the project stores intrinsics in."""
        return {"fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy), "width": int(self.width), "height": int(self.height)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "intrinsics") -> "Intrinsics":
        """The inverse of `to_dict`; other keys of `d` (e.g. a camera's "c2w") are ignored."""
        missing = [k for k in cls.KEYS if k not in d]
        if missing:
            raise CaptureError(f"{where}: intrinsics need {', '.join(missing)}")
        try:
            k = cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]))
        except (TypeError, ValueError) as err:
            raise CaptureError(f"{where}: intrinsics must be numbers ({err})") from None
        if k.width < 1 or k.height < 1 or not (k.fx > 0 and k.fy > 0):
            raise CaptureError(f"{where}: intrinsics need a positive size and focal length, got {k}")
        return k

    def as_array(self) -> np.ndarray:
        """[fx, fy, cx, cy, width, height] as float64."""
        return np.array([self.fx, self.fy, self.cx, self.cy, self.width, self.height], dtype=np.float64)


@dataclass
class Capture:
    """Posed, timed frames of one monocular video.

    Attributes:
        images: [N, H, W, 3] uint8 or float32 in [0, 1] (all frames one size).
        c2w: [N, 4, 4] float64 camera-to-world, OpenGL axes.
        intrinsics: one `Intrinsics` per frame (length N).
        times: [N] float64 in [0, 1].
        masks: optional [N, H, W] bool (True = pixel is valid / foreground to train on).
        train_idx, eval_idx: int arrays splitting the N frames into the training set and
            the held-out set.
        box: optional [2, 3] float64 scene box (min corner, max corner) in world units.
        source: where the capture came from (for messages).
        name: short name of the capture.
    """

    images: np.ndarray
    c2w: np.ndarray
    intrinsics: list
    times: np.ndarray
    masks: Optional[np.ndarray] = None
    train_idx: Optional[np.ndarray] = None
    eval_idx: Optional[np.ndarray] = None
    box: Optional[np.ndarray] = None
    source: str = "<memory>"
    name: str = "capture"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.train_idx is None:
            self.train_idx = np.arange(n)
        if self.eval_idx is None:
            self.eval_idx = np.zeros(0, dtype=np.int64)
        self.train_idx = np.asarray(self.train_idx, dtype=np.int64)
        self.eval_idx = np.asarray(self.eval_idx, dtype=np.int64)
        self.c2w = np.asarray(self.c2w, dtype=np.float64)
        self.times = np.asarray(self.times, dtype=np.float64)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise `CaptureError` naming the source and the field if anything is wrong."""
        src = self.source
        n = len(self.images)
        if n == 0:
            raise CaptureError(f"{src}: the capture is empty (no frames)")
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.ndim != 4 or imgs.shape[-1] != 3:
            shape = getattr(imgs, "shape", None)
            raise CaptureError(f"{src}: field 'images' must be [N, H, W, 3], got {shape}")
        if imgs.dtype != np.uint8 and not np.issubdtype(imgs.dtype, np.floating):
            raise CaptureError(f"{src}: field 'images' must be uint8 or float, got {imgs.dtype}")
        if self.c2w.shape != (n, 4, 4):
            raise CaptureError(f"{src}: field 'c2w' must be [{n}, 4, 4], got {self.c2w.shape}")
        bad = np.where(~np.isfinite(self.c2w).all(axis=(1, 2)))[0]
        if len(bad):
            raise CaptureError(f"{src}: frame {bad[0]}: field 'transform_matrix' is not finite")
        check_rigid(self.c2w, src)
        if len(self.intrinsics) != n:
            raise CaptureError(f"{src}: {len(self.intrinsics)} intrinsics for {n} frames")
        h, w = imgs.shape[1:3]
        for i, k in enumerate(self.intrinsics):
            if (k.width, k.height) != (w, h):
                raise CaptureError(
                    f"{src}: frame {i}: intrinsics are for {k.width}x{k.height} but the image is {w}x{h}"
                )
            if not (np.isfinite([k.fx, k.fy, k.cx, k.cy]).all() and k.fx > 0 and k.fy > 0):
                raise CaptureError(f"{src}: frame {i}: field 'fl_x/fl_y' must be finite and positive")
        if self.times.shape != (n,):
            raise CaptureError(f"{src}: field 'time' must have one value per frame")
        bad = np.where(~np.isfinite(self.times) | (self.times < 0) | (self.times > 1))[0]
        if len(bad):
            raise CaptureError(
                f"{src}: frame {bad[0]}: field 'time' = {self.times[bad[0]]} is outside [0, 1]"
            )
        if self.masks is not None and self.masks.shape != imgs.shape[:3]:
            raise CaptureError(f"{src}: field 'masks' must be [N, H, W], got {self.masks.shape}")
        for name in ("train_idx", "eval_idx"):
            idx = getattr(self, name)
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise CaptureError(f"{src}: field '{name}' indexes outside the {n} frames")
        if len(self.train_idx) == 0:
            raise CaptureError(f"{src}: no training frames")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64)
            if box.shape != (2, 3) or not np.isfinite(box).all() or (box[1] <= box[0]).any():
                raise CaptureError(f"{src}: field 'box' must be [[xmin,ymin,zmin],[xmax,ymax,zmax]]")
            self.box = box

    # --------------------------------------------------------------- accessors
    def __len__(self) -> int:
        return len(self.images)

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def images_float(self, idx=None) -> np.ndarray:
        """Images as float32 in [0, 1]: [N, H, W, 3] (or the frames `idx`)."""
        imgs = self.images if idx is None else self.images[idx]
        if imgs.dtype == np.uint8:
            return imgs.astype(np.float32) / 255.0
        return imgs.astype(np.float32, copy=False)

    def intrinsics_array(self) -> np.ndarray:
        """[N, 6] float64: fx, fy, cx, cy, width, height per frame."""
        return np.stack([k.as_array() for k in self.intrinsics])

    def camera_centers(self) -> np.ndarray:
        """[N, 3] camera positions in world units."""
        return self.c2w[:, :3, 3].copy()

    def path_length(self) -> float:
        """Length of the camera path in world units (sum of centre-to-centre steps)."""
        c = self.camera_centers()
        return float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum()) if len(c) > 1 else 0.0

    def scene_box(self, bound: float = 1.0) -> np.ndarray:
        """[2, 3] scene box: the given one, else a cube around the cameras' look-at region.

        Without a box, the cube is centred on the point nearest to all optical axes
        (least squares) and its half-size is `bound` times the median camera distance
        to that point, times 0.5: a heuristic that fits object-centric captures.
        """
        if self.box is not None:
            return np.asarray(self.box, dtype=np.float64)
        centre = look_at_point(self.c2w)
        dist = np.median(np.linalg.norm(self.camera_centers() - centre, axis=1))
        half = max(float(dist) * 0.5 * bound, 1e-3)
        return np.stack([centre - half, centre + half])

    def subset(self, idx) -> "Capture":
        """A capture of only the frames `idx` (all of them training frames)."""
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            images=self.images[idx],
            c2w=self.c2w[idx],
            intrinsics=[self.intrinsics[i] for i in idx],
            times=self.times[idx],
            masks=None if self.masks is None else self.masks[idx],
            train_idx=np.arange(len(idx)),
            eval_idx=np.zeros(0, dtype=np.int64),
        )

    def describe(self) -> dict:
        """A summary for `loopnerf info`: frames, resolution, time range, path, box."""
        box = self.scene_box()
        return {
            "source": self.source,
            "frames": len(self),
            "train_frames": int(len(self.train_idx)),
            "held_out_frames": int(len(self.eval_idx)),
            "resolution": f"{self.width}x{self.height}",
            "time_range": [float(self.times.min()), float(self.times.max())],
            "camera_path_length": round(self.path_length(), 4),
            "scene_box": box.round(4).tolist(),
            "masks": self.masks is not None,
        }


def check_rigid(c2w: np.ndarray, source: str, tol: float = 1e-3) -> None:
    """Raise `CaptureError` if any pose's rotation part is not a proper rotation."""
    r = c2w[:, :3, :3]
    err = np.abs(np.einsum("nij,nkj->nik", r, r) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(r)
    bottom = np.abs(c2w[:, 3] - np.array([0, 0, 0, 1.0])).max(axis=1)
    bad = np.where((err > tol) | (np.abs(det - 1) > tol) | (bottom > tol))[0]
    if len(bad):
        i = bad[0]
        raise CaptureError(
            f"{source}: frame {i}: field 'transform_matrix' is not a rigid transform "
            f"(|R R^T - I| = {err[i]:.3g}, det R = {det[i]:.4f})"
        )


def look_at_point(c2w: np.ndarray) -> np.ndarray:
    """[3] the point closest (least squares) to every camera's optical axis."""
    origins = c2w[:, :3, 3]
    dirs = -c2w[:, :3, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    eye = np.eye(3)
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(origins, dirs):
        p = eye - np.outer(d, d)
        a += p
        b += p @ o
    if np.linalg.cond(a) > 1e8:  # all axes parallel: fall back to one unit ahead of the mean camera
        return origins.mean(0) + dirs.mean(0)
    return np.linalg.solve(a, b)


def resolve_path(base: Path, rel: str) -> Path:
    """Resolve an image path from a transforms file relative to that file's folder."""
    p = Path(rel)
    return p if p.is_absolute() else (base / p)
