"""Bounded or unbounded: stage 1 picks the scene contraction from the capture itself.

A bounded field (`contraction` 'none') can only paint what lies beyond its box as haze
inside it: a phone capture's sky, hills or far wall end up as a curtain that every novel
view looks through (issue 13: 11-12 dB off the captured arc on a capture with a sky
dome). An unbounded one (mip-NeRF 360's contraction) keeps them far away, at the price
of half the planes' resolution for the box.

The test: rays of the training frames that never meet the box can only show what lies
beyond it. If they are a visible share of the pixels (`MIN_MISS_SHARE`) and what they show
is not one flat background colour (more than `MIN_VARIED_SHARE` of them differ from their
median colour by more than `FLAT_TOLERANCE` in some channel), the capture reaches past the
box: contraction 'mipnerf360'. Otherwise (every ray meets the
box, or the misses see a plain sky / studio backdrop, as the built-in capture and D-NeRF
do) 'none'.
"""

from __future__ import annotations

import numpy as np

MIN_MISS_SHARE = 0.02
"""Share of training pixels that must miss the box before their colours decide."""
FLAT_TOLERANCE = 0.05
"""Largest difference (colours in [0, 1]) from the misses' median colour that still counts
as the same flat background (noise, compression, a gentle gradient)."""
MIN_VARIED_SHARE = 0.25
"""Share of the missing pixels beyond FLAT_TOLERANCE from which they show a scene. The
built-in capture (96 px, its misses are the sky over the wall): flat sky 0.6 % (the
wall's anti-aliased rim), far backdrop (clouds) 73.6 %."""
TEST_PIXELS = 65536
"""Pixels tested over the training frames (a fixed-seed random subset)."""


def choose_contraction(capture, box: np.ndarray, near: float, seed: int = 0) -> tuple[str, str]:
    """('none' | 'mipnerf360', a log line saying why) for `capture` and scene `box`
    [2, 3] (world units, min and max corners); rays start at `near`."""
    import torch

    from loopnerf.data.rays import rays_for_pixels
    from loopnerf.model.sampling import intersect_box

    ids = np.asarray(capture.train_idx)
    rng = np.random.default_rng(seed)
    n = min(TEST_PIXELS, len(ids) * capture.height * capture.width)
    frame = ids[rng.integers(0, len(ids), n)]
    u = rng.integers(0, capture.width, n)
    v = rng.integers(0, capture.height, n)
    c2w = torch.as_tensor(np.asarray(capture.c2w)[frame], dtype=torch.float32)
    intr = torch.as_tensor(capture.intrinsics_array()[frame][:, :4], dtype=torch.float32)
    o, d = rays_for_pixels(c2w, intr, torch.as_tensor(u).float(), torch.as_tensor(v).float())
    lo = torch.as_tensor(box[0], dtype=torch.float32)
    hi = torch.as_tensor(box[1], dtype=torch.float32)
    half = (hi - lo) * 0.5
    t_in, t_out = intersect_box((o - (lo + hi) * 0.5) / half, d / half, float(near), 1e10)
    miss = (t_out <= t_in).numpy()
    share = float(miss.mean())
    if share < MIN_MISS_SHARE:
        return "none", f"contraction: none ({1 - share:.1%} of the training rays meet the scene box)"
    images = capture.images
    colours = np.asarray(images[frame[miss], v[miss], u[miss]], dtype=np.float64)
    if images.dtype == np.uint8:
        colours /= 255.0
    varied = float((np.abs(colours - np.median(colours, axis=0)).max(axis=1) > FLAT_TOLERANCE).mean())
    if varied <= MIN_VARIED_SHARE:
        return "none", (f"contraction: none ({share:.1%} of the training rays miss the scene box, but they see one "
                        f"flat background colour: {varied:.1%} of them differ from it by over {FLAT_TOLERANCE})")
    return "mipnerf360", (f"contraction: mipnerf360 ({share:.1%} of the training rays miss the scene box and see a "
                          f"varied scene beyond it: {varied:.1%} of them differ from their median colour by over "
                          f"{FLAT_TOLERANCE}; the field is unbounded)")

