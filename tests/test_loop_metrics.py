"""Loop and image metrics against known answers."""

import math

import numpy as np
import pytest
import torch

from loopnerf.evaluation.metrics import (
    best_cyclic_phase_psnr,
    coherence,
    completeness,
    loop_quality,
    motion_ratio,
    nearest_patch_error,
    psnr,
    seam_ratio,
    ssim,
    stderr_metric,
    video_coherence,
    video_completeness,
)

SMALL_SCALES = ((3, 2, 3, 1), (5, 3, 2, 1))


def test_psnr_known_values_and_mask():
    a = np.zeros((4, 5, 3))
    b = np.full((4, 5, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf
    mask = np.zeros((4, 5), bool)
    mask[:2] = True
    b[2:] = 0.5  # outside the mask: ignored
    assert psnr(a, b, mask) == pytest.approx(20.0)
    assert psnr(torch.zeros(2, 2, 3), torch.full((2, 2, 3), 0.01)) == pytest.approx(40.0)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((24, 30, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # A batch is the mean over its images (equal sizes): same value for a doubled batch.
    assert ssim(np.stack([a, a]), np.stack([b, b])) == pytest.approx(expected, abs=1e-10)


def test_stderr_known_answer():
    rng = np.random.default_rng(1)
    # Reference flickers between 0 and 1 (std 0.5) everywhere; a constant loop has std 0.
    reference = np.tile(np.array([0.0, 1.0])[:, None, None, None], (5, 4, 4, 3))
    loop = rng.random((1, 4, 4, 3)).repeat(6, axis=0)
    assert stderr_metric(loop, reference) == pytest.approx(0.25)
    assert stderr_metric(reference[:4], reference) == pytest.approx(0.0)
    mask = np.zeros((4, 4), bool)
    assert stderr_metric(loop, loop[:3], mask | True) == pytest.approx(0.0)


def test_seam_ratio_known_answers():
    ramp = np.linspace(0, 1, 5)[:, None, None, None] * np.ones((5, 2, 2, 3))
    # Steps of 0.25 inside, a jump of 1 across the wrap: ratio (1 / 0.0625) = 16.
    assert seam_ratio(ramp) == pytest.approx(16.0)
    # A sampled sine period whose wrap step is centred where sin's slope^2 equals its
    # mean (phase pi/4): the wrap is an ordinary step, ratio exactly 1.
    t = np.arange(12) / 12
    phase = np.pi / 4 - 2 * np.pi * 11.5 / 12
    sine = (0.5 + 0.4 * np.sin(2 * np.pi * t + phase))[:, None, None, None] * np.ones((12, 2, 2, 3))
    assert seam_ratio(sine) == pytest.approx(1.0, abs=1e-9)
    # Same period cut where the slope is steepest: the wrap step is twice the mean.
    sine0 = (0.5 + 0.4 * np.sin(2 * np.pi * (t + 0.5 / 12)))[:, None, None, None] * np.ones((12, 2, 2, 3))
    steps = np.diff(np.concatenate([sine0, sine0[:1]]), axis=0)[:, 0, 0, 0] ** 2
    assert seam_ratio(sine0) == pytest.approx(steps[-1] / steps[:-1].mean(), rel=1e-9)
    assert seam_ratio(np.ones((3, 2, 2, 3))) == 1.0


def test_best_cyclic_phase_psnr_finds_the_shift():
    rng = np.random.default_rng(2)
    truth = rng.random((6, 4, 4, 3))
    loop = np.roll(truth, 2, axis=0)  # loop frame i = truth frame i - 2
    value, shift = best_cyclic_phase_psnr(loop, truth, return_shift=True)
    assert value == math.inf and shift == 2
    noisy = loop + 0.01
    assert best_cyclic_phase_psnr(noisy, truth) == pytest.approx(40.0)
    # A loop sampled twice as densely as the truth's period (F = 2P) also matches exactly.
    dense = np.stack([truth[i // 2] if i % 2 == 0 else 0.5 * (truth[i // 2] + truth[(i // 2 + 1) % 6]) for i in range(12)])
    assert best_cyclic_phase_psnr(dense, truth) == math.inf


def test_nearest_patch_errors_known_answers():
    rng = np.random.default_rng(3)
    base = rng.random((5, 9, 9, 3)).astype(np.float32)
    reference = base[np.arange(20) % 5]
    # One period against its periodic reference: everything matches both ways.
    assert coherence(base, reference, SMALL_SCALES) == pytest.approx(0.0, abs=1e-7)
    assert completeness(base, reference, SMALL_SCALES) == pytest.approx(0.0, abs=1e-7)
    assert loop_quality(base, reference, SMALL_SCALES) == pytest.approx(0.0, abs=1e-7)
    # A constant loop c against a reference alternating 0 / 1 per frame: with 1-frame
    # 1-px patches every loop patch is |c - nearest| away, every reference patch |c - itself|.
    alt = np.tile(np.array([0.0, 1.0])[:, None, None, None], (4, 3, 3, 3))
    const = np.full((3, 3, 3, 3), 0.2)
    assert nearest_patch_error(const, alt, patch=1, stride=1, frames=1) == pytest.approx(0.2, abs=1e-6)
    assert nearest_patch_error(alt, const, patch=1, stride=1, frames=1) == pytest.approx(0.5, abs=1e-6)
    assert coherence(const, alt, ((1, 1, 1, 1),)) == pytest.approx(0.2, abs=1e-6)
    assert completeness(const, alt, ((1, 1, 1, 1),)) == pytest.approx(0.5, abs=1e-6)


def test_loop_quality_sees_the_seam():
    rng = np.random.default_rng(4)
    base = rng.random((8, 9, 9, 3)).astype(np.float32)
    reference = base[np.arange(40) % 8]
    cut = base[:5]  # a cut of the period: good inside, a jump at the wrap
    assert coherence(cut, reference, SMALL_SCALES) < loop_quality(cut, reference, SMALL_SCALES)
    assert loop_quality(cut, reference, SMALL_SCALES) > 0.05
    assert loop_quality(base, reference, SMALL_SCALES) == pytest.approx(0.0, abs=1e-7)


def test_scales_that_do_not_fit_are_skipped_and_none_raises():
    v = np.zeros((4, 6, 6, 3))
    assert coherence(v, v, ((5, 2, 3, 1), (17, 6, 3, 1))) == 0.0
    with pytest.raises(ValueError):
        coherence(v, v, ((17, 6, 3, 1),))


def test_motion_ratio_sees_damping_and_blur():
    """A wave at half amplitude scores 0.5; averaging two phases half a cycle apart scores
    ~0; a phase shift keeps 1; the mask restricts the pixels; a still reference raises."""
    t = np.arange(24)[:, None, None, None]
    x = np.arange(8)[None, None, :, None]
    wave = 0.5 + 0.3 * np.sin(2 * np.pi * (t / 24 - x / 8)) * np.ones((1, 6, 1, 3))
    damped = 0.5 + 0.5 * (wave - 0.5)
    assert motion_ratio(damped, wave) == pytest.approx(0.5, rel=1e-9)
    assert motion_ratio(np.roll(wave, 5, axis=0), wave) == pytest.approx(1.0, rel=1e-9)
    blurred = 0.5 * (wave + np.roll(wave, 12, axis=0))
    assert motion_ratio(blurred, wave) < 1e-6
    mask = np.zeros((6, 8), bool)
    mask[:, :4] = True
    mixed = wave.copy()
    mixed[:, :, 4:] = 0.5  # right half still: ignored by the mask
    assert motion_ratio(mixed, wave, mask) == pytest.approx(1.0, rel=1e-9)
    assert motion_ratio(mixed, wave) == pytest.approx(0.5, rel=1e-9)
    with pytest.raises(ValueError, match="does not move"):
        motion_ratio(wave, np.full_like(wave, 0.5))
    with pytest.raises(ValueError, match="no pixel"):
        motion_ratio(wave, wave, np.zeros((6, 8), bool))


def test_video_patch_errors_are_not_circular():
    """A video that contains the reference's patches in order scores 0 as a video, while
    taken as a loop its wrap (last frame -> first) is a jump that coherence sees."""
    rng = np.random.default_rng(3)
    ref = rng.random((10, 8, 8, 3))
    assert video_coherence(ref, ref, SMALL_SCALES) == pytest.approx(0.0, abs=1e-7)
    assert video_completeness(ref[2:8], ref, SMALL_SCALES) > 0.05  # ref frames 0-1, 8-9 missing
    assert coherence(ref, ref, SMALL_SCALES) > 0.01  # the wrap 9 -> 0 never occurs in ref


def test_cycle_references_of_true_states():
    """Loops made from the true states: windows of an exactly periodic capture match the
    cycle at some phase; standing still does not; nothing moving gives no references."""
    from loopnerf.evaluation.command import cycle_references

    rng = np.random.default_rng(5)
    cycle = rng.random((6, 4, 4, 3))
    states = cycle[np.arange(14) % 6] + 0.01  # 14 frames of the cycle, 0.01 off: 40 dB
    moving = np.zeros((4, 4), bool)
    moving[1:3] = True
    ref = cycle_references(states, cycle, moving, 6)
    assert ref["true_windows_min"] == pytest.approx(40.0) and ref["true_windows_max"] == pytest.approx(40.0)
    still = np.repeat(states.mean(0, keepdims=True), 6, axis=0)
    assert ref["standing_still"] == pytest.approx(best_cyclic_phase_psnr(still, cycle, mask=moving))
    assert ref["standing_still"] < 20.0
    assert cycle_references(states, cycle, np.zeros((4, 4), bool), 6) == {}
    assert cycle_references(states[:4], cycle, moving, 6) == {}


def test_cycle_references_score_stage1_windows_as_loops():
    """Stage 1's own windows are scored as loops: a render that is the true states with a
    known error scores that error's PSNR in every window; the worst and best window bound
    the mean; a video of another shape is refused."""
    from loopnerf.evaluation.command import cycle_references

    rng = np.random.default_rng(6)
    cycle = rng.random((6, 4, 4, 3))
    states = cycle[np.arange(14) % 6]
    moving = np.zeros((4, 4), bool)
    moving[1:3] = True
    stage1 = states + 0.1  # 20 dB off the states, so 20 dB off the cycle at the best phase
    ref = cycle_references(states, cycle, moving, 6, stage1_video=stage1)
    assert ref["stage1_windows_min"] == pytest.approx(20.0) and ref["stage1_windows_max"] == pytest.approx(20.0)
    drift = stage1.copy()
    drift[8:] = rng.random(drift[8:].shape)  # the later windows see frames unlike the cycle
    ref = cycle_references(states, cycle, moving, 6, stage1_video=drift)
    assert ref["stage1_windows_max"] == pytest.approx(20.0)
    assert ref["stage1_windows_min"] < ref["stage1_windows_mean"] < ref["stage1_windows_max"]
    assert "stage1_windows_mean" not in cycle_references(states, cycle, moving, 6)
    with pytest.raises(ValueError, match="differ in shape"):
        cycle_references(states, cycle, moving, 6, stage1_video=stage1[:10])
