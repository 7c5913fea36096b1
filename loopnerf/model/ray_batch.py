"""Rays of individual pixels, and random training batches drawn from a capture.

Pixel (u, v) = (column, row) has its centre at (u + 0.5, v + 0.5); its camera-space
direction is ((u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -1) (OpenGL axes).
"""

from __future__ import annotations

import numpy as np
import torch


def rays_for_pixels(c2w: torch.Tensor, intr: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
    """World rays through pixels.

    c2w [B, 4, 4] (or [4, 4], broadcast), intr [B, 4] (or [4]) = fx, fy, cx, cy,
    u, v [B] pixel column / row (integers or floats). Returns origins [B, 3], unit dirs [B, 3].
    """
    if c2w.dim() == 2:
        c2w = c2w.expand(u.shape[0], 4, 4)
    if intr.dim() == 1:
        intr = intr.expand(u.shape[0], 4)
    fx, fy, cx, cy = intr.unbind(-1)
    d_cam = torch.stack([(u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -torch.ones_like(fx)], dim=-1)
    d = torch.einsum("bij,bj->bi", c2w[:, :3, :3], d_cam)
    d = d / d.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].clone(), d


def camera_rays_grid(c2w: torch.Tensor, intr: torch.Tensor, width: int, height: int):
    """All rays of one camera: origins, dirs [H * W, 3] in row-major pixel order."""
    v, u = torch.meshgrid(torch.arange(height, dtype=c2w.dtype), torch.arange(width, dtype=c2w.dtype), indexing="ij")
    return rays_for_pixels(c2w, intr, u.reshape(-1), v.reshape(-1))


class RayBatcher:
    """Draws random rays (frame, pixel) from a capture's training frames.

    Holds the training images as uint8/float tensors; rays are computed per batch, so
    memory stays at the images' size whatever the capture length.
    """

    def __init__(self, capture, frame_ids: np.ndarray) -> None:
        self.frame_ids = torch.as_tensor(np.asarray(frame_ids), dtype=torch.long)
        imgs = capture.images[np.asarray(frame_ids)]
        self.images = torch.from_numpy(np.ascontiguousarray(imgs))
        self.is_uint8 = self.images.dtype == torch.uint8
        self.c2w = torch.tensor(capture.c2w[np.asarray(frame_ids)], dtype=torch.float32)
        intr = capture.intrinsics_array()[np.asarray(frame_ids)]
        self.intr = torch.tensor(intr[:, :4], dtype=torch.float32)
        self.times = torch.tensor(capture.times[np.asarray(frame_ids)], dtype=torch.float32)
        self.h, self.w = capture.height, capture.width

    def sample(self, n: int, generator: torch.Generator) -> dict:
        """`n` random rays: origins, dirs [n, 3], times [n], rgb [n, 3] float in [0, 1], and
        `frame` [n]: each ray's index into this batcher's frames."""
        f = torch.randint(0, len(self.frame_ids), (n,), generator=generator)
        u = torch.randint(0, self.w, (n,), generator=generator)
        v = torch.randint(0, self.h, (n,), generator=generator)
        o, d = rays_for_pixels(self.c2w[f], self.intr[f], u.float(), v.float())
        rgb = self.images[f, v, u]
        rgb = rgb.float() / 255.0 if self.is_uint8 else rgb.float()
        return {"origins": o, "dirs": d, "times": self.times[f], "rgb": rgb, "frame": f}
