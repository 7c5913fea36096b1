"""Rays drawn among the pixels that look into the dynamic region: the mask holds exactly
the pixels whose ray crosses the region, and the batcher draws the configured share there."""

from __future__ import annotations

import numpy as np

from fixtures.bounded import bounded
import pytest

torch = pytest.importorskip("torch")

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.model.config import preset, resolve_time_resolution
from loopnerf.model.kplanes_model import KPlanesModel
from loopnerf.model.ray_batch import RayBatcher
from loopnerf.model.ray_focus import focus_indices, frame_dynamic_pixels

BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _model_with_cube_region() -> KPlanesModel:
    """A model whose dynamic region is the cube [-0.25, 0.25]^3 around the box centre."""
    model = KPlanesModel(bounded(resolve_time_resolution(preset("tiny"), 4).model), BOX)
    g = model.dynamic_region.resolution
    grid = torch.zeros(g, g, g, dtype=torch.uint8)
    grid[3 * g // 8 : 5 * g // 8, 3 * g // 8 : 5 * g // 8, 3 * g // 8 : 5 * g // 8] = 1
    model.dynamic_region.set(grid)
    return model


def _camera(z: float = 3.0) -> np.ndarray:
    c2w = np.eye(4)
    c2w[2, 3] = z  # on +z, looking down -z at the centre (OpenGL axes)
    return c2w


def test_the_mask_is_the_pixels_whose_ray_crosses_the_region():
    model = _model_with_cube_region()
    k = Intrinsics(fx=32.0, fy=32.0, cx=16.0, cy=16.0, width=32, height=32)
    mask = frame_dynamic_pixels(model, _camera(), k.as_array(), 32, 32)
    # pixel centres' rays through the region's front face (z = 0.25, 2.75 from the camera)
    # reach |x|, |y| <= 0.25 there: columns with |u + 0.5 - 16| / 32 * 2.75 <= 0.25
    off = np.abs(np.arange(32) + 0.5 - 16) / 32
    inside = (off * 2.75 <= 0.25)[:, None] & (off * 2.75 <= 0.25)[None, :]
    assert inside.sum() > 0
    assert mask[inside].all()  # every pixel that sees the region is kept
    assert not mask[0].any() and not mask[:, 0].any()  # the border sees only static space
    assert mask.sum() <= 4 * inside.sum()  # grown by at most the test stride (here 1 px)
    flat, share = focus_indices(model, np.stack([_camera()] * 2), np.stack([k.as_array()] * 2), 32, 32, torch.Generator())
    np.testing.assert_array_equal(flat.numpy(), np.concatenate([np.flatnonzero(mask), 32 * 32 + np.flatnonzero(mask)]))
    assert share == pytest.approx(mask.mean())


def test_at_a_still_frame_the_focus_draws_the_region_pixels_seen_moving_more_often():
    model = _model_with_cube_region()
    k = Intrinsics(fx=32.0, fy=32.0, cx=16.0, cy=16.0, width=32, height=32)
    region = frame_dynamic_pixels(model, _camera(), k.as_array(), 32, 32)
    moving = np.zeros((32, 32), bool)
    moving[14:16, 12:20] = True  # part of the region's pixels, and a few beside it
    moving[0, 0] = True  # moving pixels outside the region stay out
    kept = region & moving
    assert 0 < kept.sum() < region.sum() and not kept[0, 0]
    cams, intr = np.stack([_camera()] * 2), np.stack([k.as_array()] * 2)
    flat, share = focus_indices(model, cams, intr, 32, 32, torch.Generator(), [None, moving], 3)
    counts = np.bincount(flat.numpy(), minlength=2 * 32 * 32).reshape(2, 32, 32)
    # frame 0 (no still stretch): every region pixel once; frame 1 (a still one): its
    # moving region pixels 3 times, its other region pixels once, nothing else
    np.testing.assert_array_equal(counts[0], region.astype(int))
    np.testing.assert_array_equal(counts[1], region.astype(int) + 2 * kept)
    assert share == pytest.approx(region.mean())  # the share counts each pixel once
    same, _ = focus_indices(model, cams, intr, 32, 32, torch.Generator(), [None, moving], 1)
    np.testing.assert_array_equal(same.numpy(), np.concatenate([np.flatnonzero(region), 32 * 32 + np.flatnonzero(region)]))
    with pytest.raises(ValueError, match="moving_weight"):
        focus_indices(model, cams, intr, 32, 32, torch.Generator(), [None, moving], 0)


def test_a_bad_fraction_is_a_config_error(tmp_path):
    from loopnerf.errors import ConfigError
    from loopnerf.model.train import Stage1Trainer

    n = 4
    cap = Capture(images=np.zeros((n, 8, 8, 3), np.uint8), c2w=np.stack([_camera()] * n),
                  intrinsics=[Intrinsics(8, 8, 4, 4, 8, 8)] * n, times=np.linspace(0, 1, n), box=BOX)
    cfg = preset("tiny")
    cfg.train.dynamic_ray_fraction = 1.5
    with pytest.raises(ConfigError, match="dynamic_ray_fraction"):
        Stage1Trainer(cap, cfg, tmp_path, quiet=True)
    cfg = preset("tiny")
    cfg.train.moving_focus_weight = 0
    with pytest.raises(ConfigError, match="moving_focus_weight"):
        Stage1Trainer(cap, cfg, tmp_path, quiet=True)


def test_a_config_saved_before_the_moving_focus_weight_reads_as_weight_1():
    from loopnerf.model.config import config_from_dict, config_to_dict

    data = config_to_dict(preset("cpu"))
    assert data["train"]["moving_focus_weight"] == 4
    del data["train"]["moving_focus_weight"]
    assert config_from_dict(data).train.moving_focus_weight == 1


def test_the_batcher_draws_the_focus_share_among_the_focus_pixels():
    n = 6
    cap = Capture(images=np.zeros((n, 16, 16, 3), np.uint8), c2w=np.stack([_camera()] * n),
                  intrinsics=[Intrinsics(16, 16, 8, 8, 16, 16)] * n, times=np.linspace(0, 1, n), box=BOX)
    mask = np.zeros((n, 16, 16), bool)
    mask[:, 4:6, 10:12] = True
    b = RayBatcher(cap, np.arange(n))
    b.focus(torch.from_numpy(np.flatnonzero(mask)).to(torch.int32), 0.5)
    d = b.sample(1000, torch.Generator().manual_seed(3))["dirs"]
    # the mask's pixels (rows 4-5, columns 10-11) look up and right of the axis
    assert (d[:500, 0] > 0).all() and (d[:500, 1] > 0).all()
    assert (d[500:, 0] < 0).any()  # the rest is drawn among all pixels
    with pytest.raises(ValueError, match="fraction"):
        b.focus(torch.from_numpy(np.flatnonzero(mask)).to(torch.int32), 1.0)


def test_no_focus_draws_as_before():
    n = 4
    cap = Capture(images=np.zeros((n, 8, 8, 3), np.uint8), c2w=np.stack([_camera()] * n),
                  intrinsics=[Intrinsics(8, 8, 4, 4, 8, 8)] * n, times=np.linspace(0, 1, n), box=BOX)
    a = RayBatcher(cap, np.arange(n)).sample(64, torch.Generator().manual_seed(5))
    b = RayBatcher(cap, np.arange(n))
    b.focus(torch.zeros(0, dtype=torch.int32), 0.5)
    c = b.sample(64, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a["dirs"], c["dirs"])
