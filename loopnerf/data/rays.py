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
        k = intrinsics
        return k["fx"], k["fy"], k["cx"], k["cy"], int(k["width"]), int(k["height"])
    fx, fy, cx, cy, w, h = (float(x) for x in intrinsics)
    return fx, fy, cx, cy, int(w), int(h)


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
        a depth along the optical axis).
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
    u = torch.arange(w, dtype=torch.float32, device=device) + 0.5
    v = torch.arange(h, dtype=torch.float32, device=device) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    cam = torch.stack([(uu - cx) / fx, -(vv - cy) / fy, -torch.ones_like(uu)], dim=-1)  # [H, W, 3]
    rot = pose[:, :3, :3]  # [N, 3, 3]
    dirs = torch.einsum("nij,hwj->nhwi", rot, cam)
    dirs = dirs / torch.linalg.norm(dirs, dim=-1, keepdim=True)
    origins = pose[:, None, None, :3, 3].expand_as(dirs).contiguous()
    if single:
        return origins[0], dirs[0]
    return origins, dirs
