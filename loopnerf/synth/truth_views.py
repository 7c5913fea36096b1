"""Ground truth of the synthetic scene at any camera: images and where the motion is.

For scoring what the viewer shows from cameras no capture frame had (a novel orbit):
`true_orbit` renders the true scene at each pose (the state of a given capture frame)
and marks the pixels the moving parts can cover - those whose ray hits a moving part
in any of several states spread over the capture, dilated by one pixel - so the rest
is the static region, where a loop and the truth must agree whatever their phases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loopnerf.data.capture import Intrinsics


def synth_config_from_meta(meta: dict):
    """The `SynthConfig` of a capture from its gt/meta.json (older files, written before
    natural motion existed, have no 'motion' in their config: they were periodic)."""
    from loopnerf.synth.command import SynthConfig

    cfg = dict(meta["config"])
    cfg.setdefault("motion", meta.get("motion", "periodic"))
    known = set(SynthConfig.__dataclass_fields__)
    return SynthConfig(**{k: v for k, v in cfg.items() if k in known})


def moving_mask(scene, c2w: np.ndarray, k: Intrinsics, frames: Sequence[int], dilate: int = 1) -> np.ndarray:
    """bool [H, W]: pixels whose centre ray hits a moving part of `scene` at any of the
    capture frames `frames` (dilated by `dilate` pixels)."""
    import open3d as o3d
    import open3d.core as o3c

    from loopnerf.synth.raycast import pixel_rays

    origins, dirs = pixel_rays(np.asarray(c2w, float), k, 1)
    rays = o3c.Tensor(np.concatenate([origins.reshape(-1, 3), dirs.reshape(-1, 3)], 1).astype(np.float32))
    hit = np.zeros(k.height * k.width, dtype=bool)
    for f in frames:
        parts = scene.parts(int(f))
        rc = o3d.t.geometry.RaycastingScene()
        ids = [rc.add_triangles(o3c.Tensor(p.vertices), o3c.Tensor(p.faces)) for p in parts]
        moving_ids = np.array([i for i, p in zip(ids, parts) if p.moving], dtype=np.int64)
        gid = rc.cast_rays(rays)["geometry_ids"].numpy().astype(np.int64)
        hit |= np.isin(gid, moving_ids)
    mask = hit.reshape(k.height, k.width)
    for _ in range(int(dilate)):
        m = mask.copy()
        m[1:] |= mask[:-1]
        m[:-1] |= mask[1:]
        m[:, 1:] |= mask[:, :-1]
        m[:, :-1] |= mask[:, 1:]
        mask = m
    return mask


def true_orbit(meta: dict, poses: Sequence[np.ndarray], k: Intrinsics, frames: Sequence[int],
               mask_states: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The true scene along a camera path.

    Args:
        meta: the capture's gt/meta.json.
        poses: camera-to-world [4, 4] per view (OpenGL axes); k: intrinsics of every view.
        frames: the capture frame whose state each view shows (any state: only the static
            region is compared).
        mask_states: capture frames (spread over the capture) whose moving parts make the mask.
    Returns: (rgb uint8 [N, H, W, 3], moving bool [N, H, W]).
    """
    from loopnerf.synth.command import render_true_frames

    cfg = synth_config_from_meta(meta)
    scene = cfg.make_scene()
    n_frames = int(meta["frames"])
    states = np.linspace(0, n_frames - 1, int(mask_states)).round().astype(int)
    rgb, moving = [], []
    for pose, f in zip(poses, frames):
        rgb.append(render_true_frames(cfg, pose, [int(f) % n_frames], intrinsics=k)[0])
        moving.append(moving_mask(scene, pose, k, states))
    return np.stack(rgb), np.stack(moving)
