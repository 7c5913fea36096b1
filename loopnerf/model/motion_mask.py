"""Estimate the dynamic region (`loopnerf.fields.dynamic_region`) from the capture itself.

Where the camera rests, what moves shows as pixels whose colour changes over time. Per
still stretch of the camera path (`loopnerf.data.still_segments`, a shorter minimum
length than `select`'s: this only needs a steady view):
1. temporal standard deviation of each pixel's grey level over the stretch's frames;
   moving = above `max(min_std, noise_factor x the median pixel's)` (the median pixel is
   still in a video texture: that is the noise floor of the footage), opened by a 2x2
   square (an edge flickering under the camera's shake is a line about a pixel wide) and
   dilated by `dilate_px`;
2. every voxel centre of the region grid is projected into the stretch's averaged pose.
A voxel is dynamic when at least `agreement` (60 %) of the stretches whose image it falls
in see it on moving pixels: a wall behind a flag is on the flag's pixels in one view and
off them in another, so it stays static; with three or more views, a flag hidden behind
a box in one of them still moves.
Voxels no still view sees are static (no loop is made there; the moving camera then
has to explain them with one static scene). The grid is finally dilated by
`dilate_voxels`. With no still stretch the region is everywhere (today's field) and the
report says why.

Poses are camera-to-world, OpenGL axes; pixel centres at +0.5 (`loopnerf.data.rays`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loopnerf.data.still_segments import find_still_segments
from loopnerf.errors import SelectionError

MIN_STILL_FRAMES = 8
"""Shortest still stretch used (frames): a third of a 24-frame motion period already shows
which pixels change (a test capture of 60 frames holds stills of 10-13 frames)."""


@dataclass
class MotionMaskOptions:
    min_std: float = 0.03
    """Smallest temporal std of a moving pixel's grey level (images in [0, 1])."""
    noise_factor: float = 4.0
    """Moving = above this many times the median pixel's temporal std."""
    dilate_px: int = 2
    """Pixels added around the moving pixels (the voxel centres' footprint, calibration)."""
    dilate_voxels: int = 1
    """Voxels added around the dynamic region."""
    min_frames: int = MIN_STILL_FRAMES
    """Shortest still stretch used, in frames."""
    agreement: float = 0.6
    """Share of the still views a voxel falls in that must see it on moving pixels (rounded
    up: 2 of 2, 2 of 3, 3 of 4, 3 of 5). On the demo capture (4 stills, 96 px) the region
    holds every flag vertex that moves by 2 voxels (12.4 % of the box), on the 60-frame
    test capture (3 stills, 32 px) too (21 %); at 0.75 (3 of 3) that one drops to 76 %."""


@dataclass
class MotionMask:
    """The estimate: `grid` [G, G, G] bool over the normalised cube (index [ix, iy, iz]) and
    what it was made from (for the log and the run's config)."""

    grid: np.ndarray
    stretches: list
    """(start, stop) frame ranges (capture time order) of the still stretches used."""
    moving_pixels: list
    """Fraction of each stretch's pixels found moving."""
    reason: str = ""
    """Why the region is everywhere (no still stretch), else empty."""
    still_pixels: dict = field(default_factory=dict)
    """Capture frame index -> bool [H, W]: for every frame of a still stretch, the pixels
    found moving over that stretch (`moving_pixels`); what stage 1's ray focus draws
    from at those frames (`ray_focus.focus_indices`)."""

    @property
    def fraction(self) -> float:
        return float(self.grid.mean())

    def describe(self) -> str:
        if self.reason:
            return f"dynamic region: everywhere ({self.reason})"
        px = ", ".join(f"{100 * m:.1f} %" for m in self.moving_pixels)
        return (f"dynamic region: {100 * self.fraction:.1f} % of the box, from {len(self.stretches)} still "
                f"stretch(es) {self.stretches} (moving pixels {px})")


def _dilate2(mask: np.ndarray, r: int) -> np.ndarray:
    """Square dilation of a bool image [H, W] by r pixels (a (2r+1)^2 square)."""
    out = mask.copy()
    for _ in range(int(r)):
        m = out.copy()  # rows, then columns: the two passes make the square
        m[1:] |= out[:-1]
        m[:-1] |= out[1:]
        out = m.copy()
        out[:, 1:] |= m[:, :-1]
        out[:, :-1] |= m[:, 1:]
    return out


def _open2x2(mask: np.ndarray) -> np.ndarray:
    """Morphological opening of a bool image [H, W] by a 2x2 square: keeps the pixels of
    every 2x2 block that is wholly set, drops the rest (lines one pixel wide)."""
    core = np.zeros_like(mask)
    core[:-1, :-1] = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]
    out = core.copy()
    out[1:, :] |= core[:-1, :]
    out[:, 1:] |= core[:, :-1]
    out[1:, 1:] |= core[:-1, :-1]
    return out


def _dilate3(grid: np.ndarray, r: int) -> np.ndarray:
    out = grid.copy()
    for _ in range(int(r)):
        m = out.copy()
        for ax in range(3):
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[ax], b[ax] = slice(1, None), slice(None, -1)
            m[tuple(a)] |= out[tuple(b)]
            m[tuple(b)] |= out[tuple(a)]
        out = m
    return out


def moving_pixels(images: np.ndarray, opts: MotionMaskOptions) -> np.ndarray:
    """bool [H, W]: pixels of a still view whose colour changes over the frames
    `images` [T, H, W, 3] (uint8 or float in [0, 1])."""
    img = np.asarray(images)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    std = img.mean(axis=-1).std(axis=0)
    thr = max(opts.min_std, opts.noise_factor * float(np.median(std)))
    moving = std > thr
    # opening by a 2x2 square: an edge flickering under a still camera's shake is a line
    # about one pixel wide; what moves is wider
    moving = _open2x2(moving)
    return _dilate2(moving, opts.dilate_px)


def voxel_centres(resolution: int) -> np.ndarray:
    """[G, G, G, 3] voxel centres of the region grid in [-1, 1]^3 (index [ix, iy, iz])."""
    c = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def uncontract(y: np.ndarray) -> np.ndarray:
    """The inverse of `fields.field.contract` (mip-NeRF 360, L-inf, rescaled to [-1, 1])."""
    z = 2.0 * y
    n = np.abs(z).max(axis=-1, keepdims=True)
    far = n > 1.0
    m = 1.0 / np.clip(2.0 - n, 1e-6, None)  # |x|_inf outside the unit cube
    return np.where(far, z / np.maximum(n, 1e-9) * m, z)


def estimate_motion_mask(capture, box: np.ndarray, resolution: int, contraction: str = "none", opts: MotionMaskOptions | None = None) -> MotionMask:
    """The dynamic region of `capture` over the scene box [2, 3] (world units); see the
    module docstring. `contraction` is the field's ('none' or 'mipnerf360')."""
    opts = opts or MotionMaskOptions()
    order = np.argsort(capture.times, kind="stable")
    c2w = capture.c2w[order]
    try:
        segments = find_still_segments(c2w, min_length=opts.min_frames)
    except SelectionError:
        return MotionMask(np.ones((resolution,) * 3, bool), [], [], reason=f"the camera never rests for {opts.min_frames} frames")
    x = voxel_centres(resolution).reshape(-1, 3)
    if contraction == "mipnerf360":
        x = uncontract(x)
    box = np.asarray(box, np.float64)
    world = (box[0] + box[1]) * 0.5 + x * (box[1] - box[0]) * 0.5
    votes = np.zeros(len(world), np.int32)
    views = np.zeros(len(world), np.int32)
    fractions = []
    still_pixels = {}
    for seg in segments:
        frames = order[seg.start : seg.stop]
        moving = moving_pixels(capture.images[frames], opts)
        fractions.append(float(moving.mean()))
        still_pixels.update({int(f): moving for f in frames})
        k = capture.intrinsics[int(frames[len(frames) // 2])]
        w2c = np.linalg.inv(seg.pose)
        cam = world @ w2c[:3, :3].T + w2c[:3, 3]
        front = cam[:, 2] < -1e-6
        depth = np.where(front, -cam[:, 2], 1.0)
        u = np.floor(k.fx * cam[:, 0] / depth + k.cx).astype(np.int64)  # pixel column whose square holds it
        v = np.floor(-k.fy * cam[:, 1] / depth + k.cy).astype(np.int64)
        inside = front & (u >= 0) & (u < moving.shape[1]) & (v >= 0) & (v < moving.shape[0])
        views += inside
        hit = np.zeros(len(world), bool)
        hit[inside] = moving[v[inside], u[inside]]
        votes += hit
    need = np.ceil(opts.agreement * views - 1e-9)
    dynamic = (votes > 0) & (votes >= need)
    grid = _dilate3(dynamic.reshape((resolution,) * 3), opts.dilate_voxels)
    stretches = [(int(s.start), int(s.stop)) for s in segments]
    return MotionMask(grid, stretches, fractions, still_pixels=still_pixels)
