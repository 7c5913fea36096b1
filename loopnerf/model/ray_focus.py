"""Which training pixels look into the dynamic region: stage 1 draws more rays there.

With rays drawn uniformly, a capture whose moving part covers a tenth of the image gives
the time planes a tenth of the batch: over a `cpu`-preset fit each time sample's moving
pixels are seen about once, and stage 1 keeps too little of the motion (issue 17: motion
ratio 0.76 at the demo's still cameras). `frame_dynamic_pixels` marks a frame's pixels
whose ray crosses the model's dynamic region, `focus_indices` collects them over the
training frames, and `RayBatcher.focus` draws a fixed share of every batch among them
(`TrainConfig.dynamic_ray_fraction`).

The rays are tested at a pixel stride (at most `MAX_TEST_RAYS` a frame), each at
`TEST_SAMPLES` points spread over its part of the box; the mask is then grown by the
stride so the pixels between tested rays are kept.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_TEST_RAYS = 16384
TEST_SAMPLES = 96
MAX_FOCUS_PIXELS = 8_000_000
"""Most focus pixels kept (a random subset beyond): 32 MB of int32 indices."""


def frame_dynamic_pixels(model, c2w: np.ndarray, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [H, W]: the pixels of one frame whose ray crosses `model.dynamic_region`.

    model: a `KPlanesModel` (its box, contraction and region); c2w [4, 4]
    camera-to-world (OpenGL axes); intrinsics [>= 4] fx, fy, cx, cy in pixels.
    """
    from loopnerf.data.rays import rays_for_pixels

    stride = max(1, int(np.ceil(np.sqrt(height * width / MAX_TEST_RAYS))))
    us = torch.arange(stride // 2, width, stride)
    vs = torch.arange(stride // 2, height, stride)
    vv, uu = torch.meshgrid(vs, us, indexing="ij")
    s = (torch.arange(TEST_SAMPLES, dtype=torch.float32) + 0.5) / TEST_SAMPLES
    with torch.no_grad():
        o, d = rays_for_pixels(torch.as_tensor(c2w, dtype=torch.float32),
                               torch.as_tensor(np.asarray(intrinsics)[:4], dtype=torch.float32),
                               uu.reshape(-1).float(), vv.reshape(-1).float())
        t_near, t_far = model.ray_range(o, d)
        hit = t_far > t_near
        t = model.s_to_t(s.expand(len(o), -1), t_near, torch.where(hit, t_far, t_near + 1.0), model.ray_split(o, d))
        x = model.field_coords(o[:, None, :] + d[:, None, :] * t[..., None])
        inside = model.dynamic_region.contains(x.reshape(-1, 3)).view(len(o), -1).any(dim=1) & hit
    coarse = inside.view(len(vs), len(us)).numpy()
    # each tested ray stands for the stride x stride pixels around it, grown by one such
    # block each way (a thin moving part may fall between tested rays)
    block = np.repeat(np.repeat(coarse, stride, axis=0), stride, axis=1)[:height, :width]
    padded = np.pad(block, stride)
    out = np.zeros((height, width), bool)
    for dv in range(3):
        for du in range(3):
            out |= padded[dv * stride : dv * stride + height, du * stride : du * stride + width]
    return out


def focus_indices(model, c2w: np.ndarray, intrinsics: np.ndarray, height: int, width: int,
                  generator: torch.Generator, still_moving: list | None = None,
                  moving_weight: int = 1) -> tuple[torch.Tensor, float]:
    """(int32 flat indices frame * H * W + row * W + column of the N frames' pixels whose
    ray crosses the dynamic region, their share of all pixels). Built frame by frame, so
    no [N, H, W] mask is held; at most `MAX_FOCUS_PIXELS` indices (a random subset beyond).

    still_moving: None, or per frame None or bool [H, W]: at a frame of a still stretch,
    the pixels seen moving there (`MotionMask.still_pixels`). Those of the frame's region
    pixels are listed `moving_weight` times (>= 1), so a draw among the indices picks
    each of them that many times as often as a region pixel that does not move: a still
    camera shows the region's static pixels alike in every frame, but its moving pixels
    differ from frame to frame, each a time sample the time planes must fit on its own.
    The share counts every pixel once."""
    if moving_weight < 1:
        raise ValueError(f"moving_weight must be >= 1, got {moving_weight}")
    parts, count = [], 0
    for i in range(len(c2w)):
        mask = frame_dynamic_pixels(model, c2w[i], intrinsics[i], height, width)
        count += int(mask.sum())
        flat = np.flatnonzero(mask)
        if still_moving is not None and still_moving[i] is not None and moving_weight > 1:
            flat = np.concatenate([flat] + [np.flatnonzero(mask & still_moving[i])] * (moving_weight - 1))
        parts.append((flat + i * height * width).astype(np.int64))
    flat = torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int64))
    if len(flat) > MAX_FOCUS_PIXELS:
        flat = flat[torch.randperm(len(flat), generator=generator)[:MAX_FOCUS_PIXELS]].sort().values
    return flat.to(torch.int32), count / max(len(c2w) * height * width, 1)
