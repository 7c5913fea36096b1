"""Reading, compositing, resampling and undistorting capture images (numpy only).

Every importer reads its frames through `read_image`, so a missing or unreadable
file always gives the same `CaptureError` naming the file and the field that
pointed to it. Images are handled as float32 in [0, 1] or uint8, channel-last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from loopnerf.errors import CaptureError


def read_image(path: Path, *, referenced_by: str = "", field: str = "file_path") -> np.ndarray:
    """Read one image file as [H, W, C] (C = 1, 3 or 4), uint8 or uint16 as stored.

    Args:
        path: the image file.
        referenced_by: the file (and frame) that named `path`, for the error message.
        field: the field in `referenced_by` that held the path.
    Raises:
        CaptureError: the file is missing or cannot be decoded.
    """
    import imageio.v3 as iio

    where = f"{referenced_by}: field '{field}'" if referenced_by else f"field '{field}'"
    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"{where}: image file {path} does not exist")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as err:  # imageio raises many types for corrupt files
        raise CaptureError(f"{where}: cannot read image {path}: {err}") from None
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.size == 0:
        raise CaptureError(f"{where}: image {path} has unsupported shape {img.shape}")
    return img


def to_float(img: np.ndarray) -> np.ndarray:
    """An integer or float image as float32 in [0, 1] (uint16 divides by 65535)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32, copy=False)


def to_rgb(img: np.ndarray, background: Optional[Sequence[float]] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """[H, W, C] image -> [H, W, 3] float32 RGB in [0, 1].

    Grey images are repeated to three channels; an alpha channel (C = 2 or 4) is
    composited over `background` (RGB in [0, 1]): rgb * a + bg * (1 - a). With
    `background=None` the alpha is simply dropped.
    """
    f = to_float(img)
    c = f.shape[2]
    if c in (2, 4):
        color, alpha = f[..., : c - 1], f[..., c - 1 :]
        if c == 2:
            color = np.repeat(color, 3, axis=2)
        if background is None:
            return np.ascontiguousarray(color)
        bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
        return color * alpha + bg * (1.0 - alpha)
    if c == 1:
        return np.repeat(f, 3, axis=2)
    return f


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (or uint8) -> uint8, rounding to nearest."""
    if img.dtype == np.uint8:
        return img
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float32 box-filter weights: output pixel j averages the input
    interval [j * n_in / n_out, (j + 1) * n_in / n_out), partial pixels weighted by
    their overlap. Rows sum to 1 (area resampling, like OpenCV's INTER_AREA)."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    hi = lo + scale
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-resample [H, W, C] (or [H, W]) to [height, width, C]; keeps float dtype,
    uint8 input comes back as float32 in [0, 1]."""
    f = to_float(img) if img.dtype != np.float32 else img
    h, w = f.shape[:2]
    if (w, h) == (width, height):
        return f
    wy = area_weights(h, height)
    wx = area_weights(w, width)
    if f.ndim == 2:
        return wy @ f @ wx.T
    return np.einsum("yh,hwc,xw->yxc", wy, f, wx, optimize=True)


def downscaled_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """Size of an image shrunk by `factor` (2 = half), rounded as `Intrinsics.scaled` does."""
    return int(round(width / factor)), int(round(height / factor))


def undistort_opencv(
    img: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    k: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    p: Sequence[float] = (0.0, 0.0),
    order: int = 1,
) -> np.ndarray:
    """Resample an image taken through OpenCV's lens model into the ideal pinhole image
    with the same fx, fy, cx, cy.

    For each output pixel centre (u + 0.5, v + 0.5) the normalised point
    x = (u + 0.5 - cx) / fx, y = (v + 0.5 - cy) / fy (image axes, y down) is pushed
    through the distortion model
        r2 = x^2 + y^2,
        radial = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3),
        xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2),
        yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y,
    and the input is sampled at (fx xd + cx, fy yd + cy) (bilinear for order=1,
    nearest for order=0; outside the input the border pixel is repeated).

    Args:
        img: [H, W, C] or [H, W] image.
        k: radial coefficients k1..k6 (missing ones are 0).
        p: tangential coefficients p1, p2.
    Returns: the undistorted image, same shape; float32 (or the input dtype for order=0).
    """
    from scipy.ndimage import map_coordinates

    k = list(k) + [0.0] * (6 - len(k))
    h, w = img.shape[:2]
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x = (u - cx) / fx
    y = (v - cy) / fy
    r2 = x * x + y * y
    radial = (1 + r2 * (k[0] + r2 * (k[1] + r2 * k[2]))) / (1 + r2 * (k[3] + r2 * (k[4] + r2 * k[5])))
    xd = x * radial + 2 * p[0] * x * y + p[1] * (r2 + 2 * x * x)
    yd = y * radial + p[0] * (r2 + 2 * y * y) + 2 * p[1] * x * y
    # continuous pixel coordinate -> array index (pixel centres sit at +0.5)
    col = fx * xd + cx - 0.5
    row = fy * yd + cy - 0.5
    src = img if order == 0 else to_float(img)
    planes = src[..., None] if src.ndim == 2 else src
    out = np.stack(
        [map_coordinates(planes[..., c], [row, col], order=order, mode="nearest") for c in range(planes.shape[2])],
        axis=-1,
    )
    return out[..., 0] if img.ndim == 2 else out


def shrink(img: np.ndarray, factor: float) -> np.ndarray:
    """Area-downscale [H, W, C] by `factor` (1 = unchanged, 2 = half size)."""
    if factor == 1:
        return img
    h, w = img.shape[:2]
    width, height = downscaled_size(w, h, factor)
    return resize_area(img, width, height)


def stack_frames(images: list, names: list, source: str, field: str = "file_path") -> np.ndarray:
    """Stack per-frame [H, W, 3] images into [N, H, W, 3].

    Keeps uint8 when every frame is uint8, else float32 in [0, 1].
    Raises `CaptureError` naming the first frame whose size differs from frame 0.
    """
    if not images:
        raise CaptureError(f"{source}: the capture is empty (no frames)")
    h, w = images[0].shape[:2]
    for img, name in zip(images, names):
        if img.shape[:2] != (h, w):
            raise CaptureError(
                f"{source}: field '{field}': image {name} is {img.shape[1]}x{img.shape[0]} "
                f"but {names[0]} is {w}x{h}; all frames must have one size"
            )
    if all(img.dtype == np.uint8 for img in images):
        return np.stack(images)
    return np.stack([to_float(img) for img in images]).astype(np.float32, copy=False)
