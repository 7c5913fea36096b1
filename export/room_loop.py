"""A small procedural loop with real surfaces, for tests of the surface exports.

A room corner in the box [-1, 1]^3 (world = normalised coordinates): an opaque floor
(y < -0.8, greenish with a stripe texture), a back wall (z < -0.8, tan with a texture),
a static cube on the floor, and a ball that circles in front of the wall and turns from
red to blue over the loop; a sky-blue background. Every object is a product of plane
profiles with sharp (one-cell) edges and a density of ~200 per unit inside, so the
viewer shows opaque surfaces, as a fitted scene's surfaces are.

`room_loop_ingredients` returns exactly what `bake_loop` takes; `make_room_loop` bakes
it. Deterministic. Default camera 64 x 48 px from the front, above the floor.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
FLOOR_Y = -0.8
WALL_Z = -0.8
CUBE = ((-0.7, -0.3), (FLOOR_Y, -0.4), (-0.5, -0.1))  # x, y, z ranges
BALL_CENTRE = (0.3, -0.35, 0.0)
BALL_ORBIT = (0.25, 0.15)  # x, y amplitudes of its circle
BALL_RADIUS = 0.3


def room_camera(width: int = 64, height: int = 48, fov_y_deg: float = 50.0) -> dict[str, Any]:
    """Default camera: at (0, 0.25, 1.7) looking at (0, -0.35, -0.2), OpenGL axes."""
    import numpy as np

    eye = np.array([0.0, 0.25, 1.7])
    target = np.array([0.0, -0.35, -0.2])
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return {"c2w": c2w.tolist(), "fx": f, "fy": f, "cx": width / 2, "cy": height / 2, "width": width, "height": height}


def room_loop_ingredients(frames: int = 6, resolution: int = 32, scales: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """Float32 planes (C = 8 channels), decoder and direction basis of the room loop
    (keyword arguments of `bake_loop`).

    Channels: 0 floor, 1 wall, 2 cube, 3 ball (density, each a product of 1D profiles:
    1 inside, 0 outside, a one-cell ramp); 4, 5 smooth static textures; 6, 7 the ball's
    red / blue weights over the loop (the ball's profile times (1 +- cos 2 pi p) / 2)."""
    import torch

    C, F, S = 8, int(frames), len(scales)
    phase = torch.arange(F, dtype=torch.float32) / F
    bx = BALL_CENTRE[0] + BALL_ORBIT[0] * torch.sin(2 * math.pi * phase)  # [F]
    by = BALL_CENTRE[1] + BALL_ORBIT[1] * torch.cos(2 * math.pi * phase)

    def step(u, width):  # 1 for u < 0, 0 for u > 0, ramp of `width`
        return torch.clamp(0.5 - u / width, 0.0, 1.0)

    def inside(u, lo, hi, width):
        return step(lo - u, width) * step(u - hi, width)

    static_planes, loop_planes = [], []
    for m in scales:
        r = resolution * m
        a = torch.linspace(-1, 1, r)
        w = 2.0 / (r - 1)  # one cell
        xy, xz, yz = torch.ones(r, r, C), torch.ones(r, r, C), torch.ones(r, r, C)  # [H, W, C]: xy[y, x], xz[z, x], yz[z, y]
        xt, yt, zt = torch.ones(F, r, C), torch.ones(F, r, C), torch.ones(F, r, C)
        # floor: y < FLOOR_Y
        xy[:, :, 0] = step(a - FLOOR_Y, w)[:, None].expand(r, r)
        # wall: z < WALL_Z
        xz[:, :, 1] = step(a - WALL_Z, w)[:, None].expand(r, r)
        # cube
        (x0, x1), (y0, y1), (z0, z1) = CUBE
        xy[:, :, 2] = inside(a, y0, y1, w)[:, None] * inside(a, x0, x1, w)[None, :]
        xz[:, :, 2] = inside(a, z0, z1, w)[:, None].expand(r, r)
        # ball: separable rounded profile that moves along x and y with the loop
        def prof(u):
            return torch.clamp(1.0 - (u / BALL_RADIUS) ** 4, 0.0, 1.0) ** 0.25

        for c in (3, 6, 7):
            xt[:, :, c] = prof(a[None, :] - bx[:, None])
            yt[:, :, c] = prof(a[None, :] - by[:, None])
            zt[:, :, c] = prof(a - BALL_CENTRE[2])[None, :].expand(F, r)
        cp = torch.cos(2 * math.pi * phase)[:, None]
        zt[:, :, 6] *= 0.5 + 0.5 * cp
        zt[:, :, 7] *= 0.5 - 0.5 * cp
        for c in (3, 6, 7):  # the ball lives in the loop planes only
            xy[:, :, c] = 1.0
            xz[:, :, c] = 1.0
            yz[:, :, c] = 1.0
        # textures: stripes on the floor (along x, z), blotches on the wall (x, y)
        xz[:, :, 4] = 0.5 + 0.5 * torch.sin(9 * a)[None, :] * torch.cos(5 * a)[:, None]
        xy[:, :, 5] = 0.5 + 0.5 * torch.sin(6 * a)[:, None] * torch.sin(7 * a)[None, :]
        static_planes.append([xy, xz, yz])
        loop_planes.append([xt, yt, zt])
    sigma_weight = torch.zeros(C * S)
    for s in range(S):
        sigma_weight[s * C : s * C + 4] = 14.0 / S
    sigma_bias = torch.tensor([-8.0])
    # colour = sigmoid(basis @ f): per-object base colours from the density channels,
    # textures on top; a slight view dependence through d_y.
    base = torch.tensor([
        [-0.6, 0.9, -0.8],  # floor: green
        [1.0, 0.5, -0.4],   # wall: tan
        [-1.2, -0.6, 1.4],  # cube: blue-violet
        [0.0, 0.0, 0.0],    # ball density channel: no colour of its own
        [0.9, 0.9, 0.9],    # floor stripes (lighter)
        [-0.8, -0.8, -0.6],  # wall blotches (darker)
        [4.0, -1.5, -1.5],  # ball red weight
        [-1.5, -1.0, 4.0],  # ball blue weight
    ]).T  # [3, C]

    def direction_basis(dirs: torch.Tensor) -> torch.Tensor:
        d = dirs.float()
        M = d.shape[0]
        out = torch.zeros(M, 3, C * S)
        for s in range(S):
            out[:, :, s * C : (s + 1) * C] = base[None] / S
            out[:, :, s * C + 3] = (-1.0 + 0.3 * d[:, 1:2]) / S  # a little shading with the view
        return out

    return {
        "static_planes": static_planes,
        "loop_planes": loop_planes,
        "sigma_weight": sigma_weight,
        "sigma_bias": sigma_bias,
        "direction_basis": direction_basis,
        "box": [list(BOX[0]), list(BOX[1])],
        "frames": F,
        "fps": 12.0,
        "camera": room_camera(),
        "up": (0.0, 1.0, 0.0),
        "background": (0.62, 0.74, 0.88),
        "near": 0.1,
        "far": 8.0,
    }


def make_room_loop(frames: int = 6, resolution: int = 32, scales: Sequence[int] = (1, 2), *, occupancy_resolution: int = 32):
    """The baked room loop (`BakedLoop`; see the module docstring)."""
    from loopnerf.export.bake import bake_loop

    return bake_loop(**room_loop_ingredients(frames, resolution, scales), occupancy_resolution=occupancy_resolution,
                     direction_table=(16, 32))
