"""Render whole images from a model (stage-1 or loop) in ray chunks."""

from __future__ import annotations

import numpy as np
import torch

from loopnerf.model.ray_batch import camera_rays_grid


@torch.no_grad()
def render_image(model, c2w, intrinsics, time: float, *, chunk: int = 8192, static: bool = False) -> dict:
    """Render one camera.

    c2w: [4, 4] camera-to-world (OpenGL); intrinsics: object with fx, fy, cx, cy, width,
    height; time: capture time in [0, 1] (stage 1) or loop phase in [0, 1) (loop model).
    Returns numpy arrays: rgb [H, W, 3] float32 in [0, 1], depth [H, W] float32 (world
    units), acc [H, W].
    """
    c2w_t = torch.as_tensor(np.asarray(c2w), dtype=torch.float32)
    intr = torch.tensor([intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy], dtype=torch.float32)
    w, h = int(intrinsics.width), int(intrinsics.height)
    origins, dirs = camera_rays_grid(c2w_t, intr, w, h)
    was_training = model.training
    model.eval()
    rgb, depth, acc = [], [], []
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i : i + chunk], dirs[i : i + chunk]
        t = torch.full((o.shape[0],), float(time))
        out = model(o, d, t, static=static)
        rgb.append(out["rgb"])
        depth.append(out["depth"])
        acc.append(out["acc"])
    model.train(was_training)
    return {
        "rgb": torch.cat(rgb).clamp(0, 1).view(h, w, 3).numpy(),
        "depth": torch.cat(depth).view(h, w).numpy(),
        "acc": torch.cat(acc).view(h, w).numpy(),
    }
