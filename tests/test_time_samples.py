"""The automatic time resolution: one sample per frame when the camera rests, one per
few viewpoints when it never does (D-NeRF style), and the trainer uses it."""

from __future__ import annotations

import numpy as np
import pytest

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.model.time_samples import VIEWS_PER_TIME_SAMPLE, auto_time_samples


def _capture(c2w: np.ndarray) -> Capture:
    n = len(c2w)
    return Capture(images=np.zeros((n, 8, 8, 3), np.uint8), c2w=c2w, intrinsics=[Intrinsics(8, 8, 4, 4, 8, 8)] * n,
                   times=np.linspace(0, 1, n), box=np.array([[-1, -1, -1], [1, 1, 1.0]]))


def _arc(n: int, rest: slice | None = None) -> np.ndarray:
    ang = np.linspace(0, np.pi, n)
    if rest is not None:
        ang[rest] = ang[rest.start]  # the camera stands still there
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, 0, 3], c2w[:, 2, 3] = 3 * np.sin(ang), 3 * np.cos(ang)
    return c2w


def test_a_camera_that_never_rests_shares_each_time_sample_between_viewpoints():
    n, note = auto_time_samples(_capture(_arc(50)))
    assert n == 50 // VIEWS_PER_TIME_SAMPLE == 12
    assert "never rests" in note and "12" in note


def test_a_camera_that_rests_gets_one_sample_per_frame():
    n, note = auto_time_samples(_capture(_arc(50, rest=slice(10, 30))))
    assert n == 50 and "one per frame" in note


def test_only_training_frames_count_as_viewpoints():
    cap = _capture(_arc(40))
    cap.train_idx = np.arange(0, 40, 2)  # 20 training frames, 20 held out
    assert auto_time_samples(cap)[0] == 20 // VIEWS_PER_TIME_SAMPLE


@pytest.mark.shared_data("dnerf_lego_tiny.npz")
def test_dnerf_lego_gets_a_dozen_time_samples_and_the_trainer_uses_them(tmp_path):
    from conftest import SHARED_DATA
    from loopnerf.data import load_capture
    from loopnerf.model.config import preset
    from loopnerf.model.train import Stage1Trainer

    cap = load_capture(SHARED_DATA / "dnerf_lego_tiny.npz")
    n, note = auto_time_samples(cap)
    assert n == 12, note  # 50 training frames, each a new viewpoint (README: 24.82 dB at 12, 22.39 at 50)
    tr = Stage1Trainer(cap, preset("tiny"), tmp_path, quiet=True)
    assert tr.cfg.model.field.resolution[3] == 12
    assert all(p.resolution[3] == 12 for p in tr.cfg.model.proposals)
    assert tr.time_note == note
