"""A small procedural loop for tests and demos: a soft blob that circles and
changes colour periodically (red at phase 0, blue at phase 1/2).

`demo_loop_ingredients` returns the float32 planes and an exact (analytic)
direction basis, exactly what `bake_loop` takes; `make_test_loop` bakes them.
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

# Blob in normalised coordinates: centre (AMP_X sin 2 pi p, AMP_Y cos 2 pi p, 0), Gaussian width WIDTH.
AMP_X = 0.35
AMP_Y = 0.15
WIDTH = 0.3
TEST_BOX = ((-1.5, -1.0, -1.0), (1.5, 1.0, 1.0))


def demo_loop_camera(width: int = 40, height: int = 30, fov_y_deg: float = 40.0) -> dict[str, Any]:
    """Default camera of the test loop: at world (0, 0.4, 3) looking at the origin,
    OpenGL axes, vertical field of view fov_y_deg."""
    import numpy as np

    eye = np.array([0.0, 0.4, 3.0])
    forward = -eye / np.linalg.norm(eye)  # camera looks down -Z: z axis = -forward
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return {"c2w": c2w.tolist(), "fx": f, "fy": f, "cx": width / 2, "cy": height / 2, "width": width, "height": height}


def demo_loop_ingredients(
    frames: int = 8, resolution: int = 16, features: int = 8, scales: Sequence[int] = (1, 2), seed: int = 0
) -> dict[str, Any]:
    """Float32 planes, decoder and an exact direction basis of the test loop.

    Returns a dict with the keyword arguments of `bake_loop`: static_planes, loop_planes,
    sigma_weight, sigma_bias, direction_basis (callable [M, 3] -> [M, 3, C * S]), box,
    frames, fps, camera, up, background, near, far.

    Channel layout (per scale): 0 = the blob (drives density), 1 = blob * (1 + cos 2 pi p) / 2
    (red), 2 = blob * (1 - cos 2 pi p) / 2 (blue), 3.. = smooth random static texture.
    """
    import torch

    if features < 3:
        raise ValueError("the test loop needs at least 3 features")
    g = torch.Generator().manual_seed(seed)
    C, F, S = int(features), int(frames), len(scales)
    phase = torch.arange(F, dtype=torch.float32) / F
    cx = AMP_X * torch.sin(2 * math.pi * phase)  # [F]
    cy = AMP_Y * torch.cos(2 * math.pi * phase)

    def gauss(u):
        return torch.exp(-0.5 * (u / WIDTH) ** 2)

    static_planes, loop_planes = [], []
    for m in scales:
        rx, ry, rz = (resolution * m,) * 3
        ax = torch.linspace(-1, 1, rx)
        ay = torch.linspace(-1, 1, ry)
        az = torch.linspace(-1, 1, rz)
        # Static: xz carries the blob's z profile; extra channels a smooth random texture.
        xy = torch.ones(ry, rx, C)
        xz = torch.ones(rz, rx, C)
        yz = torch.ones(rz, ry, C)
        xz[:, :, :3] = gauss(az)[:, None, None]
        if C > 3:
            freq = torch.rand(C - 3, 2, generator=g) * 2 + 0.5
            ph = torch.rand(C - 3, 2, generator=g) * 2 * math.pi
            tex = 0.5 + 0.4 * torch.sin(freq[:, 0, None, None] * 3 * ay[None, :, None] + ph[:, 0, None, None]) * torch.cos(
                freq[:, 1, None, None] * 3 * ax[None, None, :] + ph[:, 1, None, None]
            )  # [C-3, ry, rx]
            xy[:, :, 3:] = tex.permute(1, 2, 0)
        # Loop: xt / yt move the blob; zt modulates the two colour channels.
        xt = torch.ones(F, rx, C)
        yt = torch.ones(F, ry, C)
        zt = torch.ones(F, rz, C)
        xt[:, :, :3] = gauss(ax[None, :] - cx[:, None])[..., None]
        yt[:, :, :3] = gauss(ay[None, :] - cy[:, None])[..., None]
        c = torch.cos(2 * math.pi * phase)[:, None]
        zt[:, :, 1] = (0.5 + 0.5 * c).expand(F, rz)
        zt[:, :, 2] = (0.5 - 0.5 * c).expand(F, rz)
        static_planes.append([xy, xz, yz])
        loop_planes.append([xt, yt, zt])

    sigma_weight = torch.zeros(C * S)
    sigma_weight[torch.arange(S) * C] = 14.0 / S
    sigma_bias = torch.tensor([-8.0])
    mix = torch.randn(3, C * S, generator=g) * 0.3  # texture channels: small, fixed colour mix
    for s in range(S):
        mix[:, s * C : s * C + 3] = 0.0

    def direction_basis(dirs: torch.Tensor) -> torch.Tensor:
        """Exact basis [M, 3, C*S]: red / blue from channels 1 / 2, a view-dependent green."""
        d = dirs.float()
        M = d.shape[0]
        out = mix[None].expand(M, 3, C * S).clone()
        for s in range(S):
            k = s * C
            out[:, 0, k + 1] = 7.0 / S
            out[:, 2, k + 2] = 7.0 / S
            out[:, 1, k + 0] = (1.0 + 1.5 * d[:, 1] + 0.5 * d[:, 0]) / S
            out[:, 0, k + 0] = -2.0 / S
            out[:, 2, k + 0] = -2.0 / S
        return out

    return {
        "static_planes": static_planes,
        "loop_planes": loop_planes,
        "sigma_weight": sigma_weight,
        "sigma_bias": sigma_bias,
        "direction_basis": direction_basis,
        "box": [list(TEST_BOX[0]), list(TEST_BOX[1])],
        "frames": F,
        "fps": 12.0,
        "camera": demo_loop_camera(),
        "up": (0.0, 1.0, 0.0),
        "background": (1.0, 1.0, 1.0),
        "near": 0.1,
        "far": 10.0,
    }


def make_test_loop(
    frames: int = 8,
    resolution: int = 16,
    features: int = 8,
    scales: Sequence[int] = (1, 2),
    seed: int = 0,
    *,
    occupancy_resolution: int = 16,
    direction_table: tuple[int, int] = (16, 32),
):
    """A small baked procedural loop (`BakedLoop`, fp16 planes, occupancy, direction
    table): a blob circling in the box [-1.5, 1.5] x [-1, 1] x [-1, 1], red at phase 0
    turning blue at phase 1/2, on a white background; default camera 40 x 30 px."""
    from loopnerf.export.bake import bake_loop

    ingredients = demo_loop_ingredients(frames, resolution, features, scales, seed)
    return bake_loop(
        **ingredients, occupancy_resolution=occupancy_resolution, direction_table=direction_table
    )

