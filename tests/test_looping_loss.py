"""The VideoLoop3D looping loss: known values, invariances, gradients."""

import pytest
import torch

from loopnerf.distill import looping_loss
from loopnerf.patches import nearest_patch_target, pad_loop, patch_starts


def periodic(base, length):
    """[length, H, W, C]: base [P, H, W, C] repeated in time."""
    return base[torch.arange(length) % base.shape[0]]


def test_zero_for_one_period_of_a_periodic_reference():
    g = torch.Generator().manual_seed(0)
    # Dyadic values (k / 16) make the overlap averaging exact, so the loss is exactly 0.
    base = torch.randint(0, 16, (6, 9, 11, 3), generator=g).float() / 16
    reference = periodic(base, 40)
    for shift in (0, 2):  # any phase of the period is a perfect loop
        rendered = torch.roll(base, shift, dims=0)
        assert looping_loss(rendered, reference).item() == 0.0
        assert looping_loss(rendered, reference, alpha=0.0).item() == 0.0
    # Reference patches start every frame_stride frames: with an odd period every phase occurs.
    base5 = base[:5]
    assert looping_loss(base5, periodic(base5, 31), patch=5, frames=4, stride=3, frame_stride=2).item() == 0.0
    # Random (non-dyadic) values: zero up to rounding of the overlap average.
    base = torch.rand(5, 8, 9, 3, generator=g)
    assert looping_loss(base, periodic(base, 23)).item() < 1e-12


def test_not_zero_for_a_truncated_period():
    # Cutting 4 frames of a 6-frame period leaves a seam that the reference never shows.
    g = torch.Generator().manual_seed(1)
    base = torch.rand(6, 8, 8, 3, generator=g)
    assert looping_loss(base[:4], periodic(base, 30)).item() > 1e-3


def test_hand_computed_single_pixel_cases():
    def grey(values):
        return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 1, 3)

    # frames = 1: each loop value goes to its nearest reference value.
    loss = looping_loss(grey([0.1, 0.8]), grey([0.0, 0.5, 1.0]), patch=1, frames=1, stride=1)
    assert loss.item() == pytest.approx((0.1**2 + 0.2**2) / 2, abs=1e-7)
    # frames = 2: padded loop (a, b, a); patches (a, b), (b, a) match (0, 1), (1, 0);
    # folded target (0, 1, 0) (the middle frame averages two 1s).
    loss = looping_loss(grey([0.2, 0.6]), grey([0.0, 1.0, 0.0]), patch=1, frames=2, stride=1)
    assert loss.item() == pytest.approx((0.2**2 + 0.4**2 + 0.2**2) / 3, abs=1e-7)
    # alpha: reference {0, 0.5}, loop {0.1, 0.2}. Plainly both match 0; the reference
    # value 0.5 has smallest distance 0.09 to the loop, 0 has 0.01, so with alpha = 1e-3
    # 0.2 goes to 0.5 (0.09 / 0.091 < 0.04 / 0.011) and the loss becomes (0.01 + 0.09) / 2.
    rendered, reference = grey([0.1, 0.2]), grey([0.0, 0.5])
    plain = looping_loss(rendered, reference, patch=1, frames=1, stride=1)
    normalised = looping_loss(rendered, reference, patch=1, frames=1, stride=1, alpha=1e-3)
    assert plain.item() == pytest.approx((0.01 + 0.04) / 2, abs=1e-7)
    assert normalised.item() == pytest.approx((0.01 + 0.09) / 2, abs=1e-7)


def test_fold_averages_overlapping_patches():
    # patch 2 stride 1 on a 1x3 strip... as 2x3 frames: the middle column is in two patches.
    rendered = torch.zeros(1, 2, 3, 1)
    reference = torch.tensor([[[1.0], [2.0], [3.0]], [[1.0], [2.0], [3.0]]])[None]
    target = nearest_patch_target(rendered, reference, patch=2, frames=1, stride=1)
    torch.testing.assert_close(target, reference)


def test_block_size_does_not_change_the_value_or_gradient():
    g = torch.Generator().manual_seed(2)
    reference = torch.rand(17, 13, 10, 3, generator=g)
    rendered = torch.rand(5, 13, 10, 3, generator=g)
    values, grads = [], []
    for block in (None, 1, 3, 7, 1000):
        r = rendered.clone().requires_grad_()
        loss = looping_loss(r, reference, block=block, alpha=0.01)
        loss.backward()
        values.append(loss.item())
        grads.append(r.grad)
    assert all(v == values[0] for v in values)
    for gr in grads[1:]:
        torch.testing.assert_close(gr, grads[0], rtol=0, atol=0)


def test_gradient_only_into_rendered_and_finite():
    g = torch.Generator().manual_seed(3)
    reference = torch.rand(12, 8, 8, 3, generator=g).requires_grad_()
    rendered = torch.rand(4, 8, 8, 3, generator=g).requires_grad_()
    loss = looping_loss(rendered, reference)
    loss.backward()
    assert reference.grad is None
    assert torch.isfinite(rendered.grad).all() and rendered.grad.abs().sum() > 0
    # The analytic gradient: d/d rendered of mean((pad(r) - target)^2) with target fixed.
    padded = pad_loop(rendered.detach(), 3)
    target = nearest_patch_target(padded, reference.detach())
    expected = torch.zeros_like(rendered)
    diff = 2 * (padded - target) / padded.numel()
    expected.index_add_(0, torch.arange(padded.shape[0]) % 4, diff)
    torch.testing.assert_close(rendered.grad, expected)


def test_optimising_pixels_reduces_the_loss():
    g = torch.Generator().manual_seed(4)
    base = torch.rand(4, 8, 8, 3, generator=g)
    reference = periodic(base, 20)
    pixels = torch.full((4, 8, 8, 3), 0.5, requires_grad=True)
    opt = torch.optim.Adam([pixels], lr=0.05)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = looping_loss(pixels, reference)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.1 * first


def test_patch_grid_covers_the_border_and_short_loops_pad():
    assert patch_starts(10, 3, 2).tolist() == [0, 2, 4, 6, 7]
    assert patch_starts(9, 3, 2).tolist() == [0, 2, 4, 6]
    frames = torch.arange(2.0).view(2, 1, 1, 1)
    assert pad_loop(frames, 5).flatten().tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError):
        looping_loss(torch.rand(3, 2, 2, 3), torch.rand(9, 2, 2, 3))  # 3-px patches on 2x2 frames


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(5)
    reference = torch.rand(15, 12, 12, 3, generator=g)
    rendered = torch.rand(6, 12, 12, 3, generator=g)
    cpu = looping_loss(rendered, reference).item()
    gpu = looping_loss(rendered.cuda(), reference.cuda()).item()
    assert gpu == pytest.approx(cpu, rel=1e-4)


def test_wrap_both_is_zero_on_periodic_and_catches_the_seam():
    g = torch.Generator().manual_seed(4)
    base = torch.randint(0, 16, (6, 9, 11, 3), generator=g).float() / 16
    reference = periodic(base, 40)
    for shift in (0, 3):
        assert looping_loss(torch.roll(base, shift, dims=0), reference, wrap="both", frames=5, alpha=0.0).item() == 0.0
    assert looping_loss(base[:4], periodic(base, 30), wrap="both").item() > 1e-3
    with pytest.raises(ValueError, match="wrap"):
        looping_loss(base, reference, wrap="sideways")


def test_wrap_both_weighs_every_loop_frame_alike():
    # A loop that is uniformly off the periodic reference by a constant gets the same
    # gradient on every frame with wrap="both"; with VideoLoop3D's "append" padding the
    # first frames - 1 frames (which appear twice in the padded video) get more.
    g = torch.Generator().manual_seed(5)
    base = torch.rand(8, 7, 7, 3, generator=g)
    reference = periodic(base, 48)
    for wrap, uniform in (("both", True), ("append", False)):
        rendered = (base + 0.01).requires_grad_(True)
        looping_loss(rendered, reference, frames=3, wrap=wrap).backward()
        per_frame = rendered.grad.abs().sum(dim=(1, 2, 3))
        spread = float(per_frame.max() / per_frame.min())
        assert (spread < 1.0 + 1e-6) if uniform else (spread > 1.5), (wrap, per_frame)


def test_crop_schedule_is_coarse_to_fine_and_ends_native():
    """Report §3.4: 192 px crops downsampled to 48, halving every 1000 steps until native
    48 px crops; at 1080p the paper preset must reach native crops within its steps."""
    from loopnerf.distill.train import crop_schedule, distill_preset

    paper = distill_preset("paper")
    crops = [crop_schedule(s, paper, 1080)[0] for s in (0, 999, 1000, 2000, paper.steps - 1)]
    assert crops == [192, 192, 96, 48, 48]
    cpu = distill_preset("cpu")
    assert [crop_schedule(s, cpu, 96)[0] for s in (0, cpu.halve_every, cpu.steps - 1)] == [64, 32, 32]
    assert crop_schedule(0, cpu, 40) == (32, 0)  # no room to go coarse: native from the start


def test_segment_start_is_where_the_window_wraps_best():
    """init 'segment' starts the loop at the F-frame window whose next frame looks most
    like its first (the stage-1 motion then nearly closes at the wrap)."""
    import numpy as np

    from loopnerf.distill.segment_videos import SegmentVideo
    from loopnerf.distill.train import best_wrap_start, segment_init_times

    rng = np.random.default_rng(0)
    video = rng.random((40, 4, 5, 3)).astype(np.float32)
    video[6 + 24] = video[6] + 1e-3  # only the window starting at frame 6 closes
    assert best_wrap_start(video, 24) == 6
    periodic_video = np.stack([video[k % 8] for k in range(41)])  # every start closes: the middle one
    assert best_wrap_start(periodic_video, 24) == 8
    times = np.linspace(0.2, 0.4, 40)
    short = SegmentVideo(0, video[:20], np.eye(4), None, times[:20])
    longest = SegmentVideo(1, video, np.eye(4), None, times)
    assert np.allclose(segment_init_times([short, longest], 24), times[6:30])
    assert np.allclose(segment_init_times([short], 24), np.linspace(times[0], times[19], 24))
