"""camera_rays: pixel-centre convention, OpenGL axes, unit directions, batching."""

import numpy as np
import torch

from loopnerf.data.capture import Intrinsics
from loopnerf.data.rays import camera_rays


def look_at(eye, target, up=(0.0, 1.0, 0.0)):
    """[4, 4] OpenGL camera-to-world at `eye` looking at `target`."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def test_pixel_centre_ray_hits_expected_point():
    # camera at (0, 0, 5) looking at the origin; plane z = 0 at distance 5.
    k = Intrinsics(fx=100.0, fy=80.0, cx=32.0, cy=24.0, width=64, height=48)
    o, d = camera_rays(look_at([0, 0, 5], [0, 0, 0]), k)
    assert o.shape == d.shape == (48, 64, 3) and d.dtype == torch.float32
    assert torch.allclose(d.norm(dim=-1), torch.ones(48, 64), atol=1e-6)

    def hit(v, u):  # where the ray of pixel (column u, row v) meets z = 0
        t = -o[v, u, 2] / d[v, u, 2]
        return (o[v, u] + t * d[v, u]).numpy()

    # pixel (u=40, v=10): centre (40.5, 10.5); x = 5 * (40.5 - 32) / 100, y = -5 * (10.5 - 24) / 80
    assert np.allclose(hit(10, 40), [5 * 8.5 / 100, 5 * 13.5 / 80, 0.0], atol=1e-5)
    # the corner pixel (0, 0) is up and to the left (OpenGL: +Y up, row 0 at the top)
    x, y, _ = hit(0, 0)
    assert x < 0 and y > 0
    assert np.allclose(hit(0, 0), [-5 * 31.5 / 100, 5 * 23.5 / 80, 0.0], atol=1e-5)


def test_rotated_camera_and_batch():
    k = (50.0, 50.0, 8.0, 8.0, 16, 16)
    poses = np.stack([look_at([3, 0, 0], [0, 0, 0]), look_at([0, 4, 0.001], [0, 0, 0], up=(0, 0, -1))])
    o, d = camera_rays(torch.tensor(poses), k)
    assert o.shape == (2, 16, 16, 3)
    # the four pixels around the principal point average to the optical axis (-Z of the camera)
    for n, eye in enumerate(([3, 0, 0], [0, 4, 0.001])):
        axis = d[n, 7:9, 7:9].reshape(-1, 3).mean(0)
        axis = axis / axis.norm()
        expect = -torch.tensor(eye, dtype=torch.float32) / np.linalg.norm(eye)
        assert torch.allclose(axis, expect, atol=1e-4)
        assert torch.allclose(o[n, 5, 3], torch.tensor(eye, dtype=torch.float32))
    single_o, single_d = camera_rays(poses[1], {"fx": 50.0, "fy": 50.0, "cx": 8.0, "cy": 8.0, "width": 16, "height": 16})
    assert torch.allclose(single_d, d[1]) and torch.allclose(single_o, o[1])
