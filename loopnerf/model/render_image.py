"""Render whole images from a model (stage-1 or loop) in ray chunks."""

from __future__ import annotations

import numpy as np
import torch

from loopnerf.data.rays import camera_rays


@torch.no_grad()
def render_image(model, c2w, intrinsics, time: float, *, chunk: int = 8192, static: bool = False,
                 uniform_samples: int | None = None) -> dict:
    """Render one camera.

    c2w: [4, 4] camera-to-world (OpenGL); intrinsics: object with fx, fy, cx, cy, width,
    height; time: capture time in [0, 1] (stage 1) or loop phase in [0, 1) (loop model).
    uniform_samples: None renders with the model's proposal sampler (as trained); N
    integrates each ray with N evenly spaced bins over its range instead (evenly in
    disparity when unbounded): slower, but it converges to the field's own volume
    integral, which the proposal sampler only approximates where it puts wide bins
    (faint matter in front of surfaces). The baked viewer computes that integral.
    Returns numpy arrays: rgb [H, W, 3] float32 in [0, 1], depth [H, W] float32 (world
    units), acc [H, W].
    """
    w, h = int(intrinsics.width), int(intrinsics.height)
    origins, dirs = (r.reshape(-1, 3) for r in camera_rays(np.asarray(c2w), intrinsics))
    was_training = model.training
    model.eval()
    rgb, depth, acc = [], [], []
    if uniform_samples is not None:
        # hold at most chunk x 64 samples at once (about what the proposal path holds)
        chunk = max(64, min(chunk, chunk * 64 // max(int(uniform_samples), 1)))
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i : i + chunk], dirs[i : i + chunk]
        t = torch.full((o.shape[0],), float(time))
        if uniform_samples is None:
            out = model(o, d, t, static=static)
        else:
            t_near, t_far = model.ray_range(o, d)
            hit = t_far > t_near
            s = torch.linspace(0.0, 1.0, int(uniform_samples) + 1).expand(o.shape[0], -1)
            t_edges = model.s_to_t(s, t_near, torch.maximum(t_far, t_near), model.ray_split(o, d))
            out = model.render_samples(o, d, t, t_edges, hit, static=static)
        rgb.append(out["rgb"])
        depth.append(out["depth"])
        acc.append(out["acc"])
    model.train(was_training)
    return {
        "rgb": torch.cat(rgb).clamp(0, 1).view(h, w, 3).numpy(),
        "depth": torch.cat(depth).view(h, w).numpy(),
        "acc": torch.cat(acc).view(h, w).numpy(),
    }


@torch.no_grad()
def render_video(model, c2w, intrinsics, times, *, chunk: int = 8192) -> np.ndarray:
    """rgb [T, H, W, 3] float32 in [0, 1]: a stage-1 model (`KPlanesModel`) at one camera
    and several capture times in [0, 1], exactly as `render_image` at each time.

    Outside its dynamic region the field and the proposal fields do not depend on time,
    so a ray none of whose samples (of any proposal level or the main field) falls in the
    region renders the same at every time: with the sampler deterministic at evaluation,
    its samples are the same too. Those rays are rendered once, and only the others
    (a still camera's view of the moving part: a quarter of the demo's pixels) at every
    time (`KPlanesModel.rays_meeting_region` tells them apart)."""
    times = [float(t) for t in times]
    w, h = int(intrinsics.width), int(intrinsics.height)
    if not times:
        return np.zeros((0, h, w, 3), np.float32)
    origins, dirs = (r.reshape(-1, 3) for r in camera_rays(np.asarray(c2w), intrinsics))
    was_training = model.training
    model.eval()
    frames = torch.empty(len(times), origins.shape[0], 3)
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i : i + chunk], dirs[i : i + chunk]
        t0 = torch.full((o.shape[0],), times[0])
        smp = model.sample_along_rays(o, d, t0)
        out = model.render_samples(o, d, t0, smp["t_edges"], smp["hit"])
        frames[:, i : i + o.shape[0]] = out["rgb"]
        idx = torch.nonzero(model.rays_meeting_region(o, d, smp)).squeeze(1)
        if len(idx) == 0:
            continue
        for k, t in enumerate(times[1:], start=1):
            frames[k, i + idx] = model(o[idx], d[idx], torch.full((len(idx),), t))["rgb"]
    model.train(was_training)
    return frames.clamp(0, 1).view(len(times), h, w, 3).numpy()
