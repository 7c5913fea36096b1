"""Render whole images from a model (stage-1 or loop) in ray chunks."""

from __future__ import annotations

import numpy as np
import torch

from loopnerf.data.rays import camera_rays


@torch.no_grad()
def render_image(model, c2w, intrinsics, time: float, *, chunk: int = 8192, static: bool = False) -> dict:
    """Render one camera.

    c2w: [4, 4] camera-to-world (OpenGL); intrinsics: object with fx, fy, cx, cy, width,
    height; time: capture time in [0, 1] (stage 1) or loop phase in [0, 1) (loop model).
    Returns numpy arrays: rgb [H, W, 3] float32 in [0, 1], depth [H, W] float32 (world
    units), acc [H, W].
    """
    w, h = int(intrinsics.width), int(intrinsics.height)
    origins, dirs = (r.reshape(-1, 3) for r in camera_rays(np.asarray(c2w), intrinsics))
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
