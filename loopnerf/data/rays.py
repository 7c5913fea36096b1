"""Camera rays of a pinhole camera, one per pixel centre.

Conventions (docs/ARCHITECTURE.md): camera-to-world poses in OpenGL axes (the camera
looks down -Z, +Y up, +X right); pixel (u, v) = (column, row) has its centre at
(u + 0.5, v + 0.5); its camera-space direction is
((u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -1).
"""

from __future__ import annotations

from typing import Union

import numpy as np


def _intrinsics_tuple(intrinsics) -> tuple[float, float, float, float, int, int]:
    """(fx, fy, cx, cy, width, height) from an `Intrinsics`, a dict or a 6-sequence."""
    if hasattr(intrinsics, "fx"):
        k = intrinsics
        return k.fx, k.fy, k.cx, k.cy, int(k.width), int(k.height)
    if isinstance(intrinsics, dict):
        from loopnerf.data.capture import Intrinsics

        return _intrinsics_tuple(Intrinsics.from_dict(intrinsics))
    fx, fy, cx, cy, w, h = (float(x) for x in intrinsics)
    return fx, fy, cx, cy, int(w), int(h)


def rays_for_pixels(c2w, intr, u, v):
    """World rays through individual pixels (torch).

    c2w [B, 4, 4] (or [4, 4], broadcast), intr [B, 4] (or [4]) = fx, fy, cx, cy;
    u, v [B] pixel column / row (integers or floats; the centre is at +0.5).
    Returns origins [B, 3], unit dirs [B, 3].
    """
    import torch

    if c2w.dim() == 2:
        c2w = c2w.expand(u.shape[0], 4, 4)
    if intr.dim() == 1:
        intr = intr.expand(u.shape[0], 4)
    fx, fy, cx, cy = intr.unbind(-1)
    d_cam = torch.stack([(u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -torch.ones_like(fx)], dim=-1)
    d = torch.einsum("bij,bj->bi", c2w[:, :3, :3], d_cam)
    d = d / d.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].clone(), d


def camera_rays(c2w: Union["np.ndarray", "torch.Tensor"], intrinsics, device=None):  # noqa: F821
    """Rays through every pixel centre.

    Args:
        c2w: [4, 4] (or [3, 4]) camera-to-world pose, OpenGL axes, or [N, 4, 4] for N
            cameras sharing `intrinsics`; numpy array or torch tensor.
        intrinsics: `Intrinsics`, a dict with fx, fy, cx, cy, width, height, or
            the sequence (fx, fy, cx, cy, width, height), in pixels.
        device: torch device of the result (default: c2w's device, else CPU).
    Returns:
        (origins, dirs): float32 tensors [H, W, 3] (or [N, H, W, 3]) in world units;
        `dirs` are unit vectors (so a ray parameter is a distance along the ray, not
        a depth along the optical axis). `.reshape(-1, 3)` gives row-major pixel order.
    """
    import torch

    fx, fy, cx, cy, w, h = _intrinsics_tuple(intrinsics)
    pose = torch.as_tensor(np.asarray(c2w) if not torch.is_tensor(c2w) else c2w)
    if device is None:
        device = pose.device
    pose = pose.to(device=device, dtype=torch.float32)
    single = pose.ndim == 2
    if single:
        pose = pose[None]
    if pose.shape[-2] == 3:  # [N, 3, 4]: complete the bottom row
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], device=device).expand(pose.shape[0], 1, 4)
        pose = torch.cat([pose, bottom], dim=1)
    intr = torch.tensor([fx, fy, cx, cy], dtype=torch.float32, device=device)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device), torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    rays = [rays_for_pixels(p, intr, u, v) for p in pose]
    origins = torch.stack([o for o, _ in rays]).view(-1, h, w, 3)
    dirs = torch.stack([d for _, d in rays]).view(-1, h, w, 3)
    if single:
        return origins[0], dirs[0]
    return origins, dirs
