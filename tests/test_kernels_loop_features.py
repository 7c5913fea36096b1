"""The loop field at many phases at once (`kernels.loop_features`) against its twin, the
reference hexplane on every point repeated at each phase, in float64: values and the loop
planes' gradients, points on borders and outside the box, phases outside [0, 1); the
decoded variant against the linear decoder's own arithmetic; and a loop model's
`render_phases` against `render_samples` on the repeated rays."""

from __future__ import annotations

import pytest
import torch

from fixtures.bounded import bounded

from loopnerf.kernels import reference
from loopnerf.kernels.loop_features import loop_features, loop_features_decoded

DT = torch.float64


def _setup(seed: int, channels: int = 3, rows: int = 5, n: int = 60):
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.rand(*s, generator=gen, dtype=DT)  # noqa: E731
    space, loops = [], []
    for rx, ry, rz in ((4, 5, 3), (8, 10, 6)):
        space.append([rand(ry, rx, channels) + 0.5, rand(rz, rx, channels) + 0.5, rand(rz, ry, channels) + 0.5])
        loops.append([(rand(rows, r, channels) + 0.5).requires_grad_() for r in (rx, ry, rz)])
    pts = rand(n, 3) * 2.6 - 1.3  # a share outside the box: border values
    pts[:6] = torch.tensor([[-1.0, 1.0, 0.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1 / 3, -1 / 9, 0.2]], dtype=DT)
    phases = torch.tensor([0.0, 0.2, 1.0 / rows, 0.5, 0.999, 1.3, -0.25], dtype=DT)
    return space, loops, pts, phases


def _twin_features(space, loops, pts, phases):
    planes6 = [[sp[0], sp[1], lp[0], sp[2], lp[1], lp[2]] for sp, lp in zip(space, loops)]
    x4 = torch.cat([pts.repeat(len(phases), 1), (phases * 2 - 1).repeat_interleave(len(pts))[:, None]], 1)
    return reference.hexplane_features(x4, planes6, wrap_time=True, channels_last=True).view(len(phases), len(pts), -1)


@pytest.mark.parametrize("seed", [0, 1])
def test_features_match_the_repeated_hexplane_in_float64(seed):
    space, loops, pts, phases = _setup(seed)
    static = reference.hexplane_features(pts, space, channels_last=True)
    got = loop_features(pts, phases, static, loops)
    want = _twin_features(space, loops, pts, phases)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    flat = [p for scale in loops for p in scale]
    up = torch.randn(want.shape, generator=torch.Generator().manual_seed(seed), dtype=DT)
    for g, w in zip(torch.autograd.grad(got, flat, up), torch.autograd.grad(want, flat, up)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_decoded_logits_match_the_linear_decoder_in_float64():
    space, loops, pts, phases = _setup(3, channels=4, n=60)
    gen = torch.Generator().manual_seed(9)
    per_ray = 6  # 10 rays of 6 samples
    w = torch.randn(8, generator=gen, dtype=DT)
    basis = torch.randn(10, 3, 8, generator=gen, dtype=DT)
    static = reference.hexplane_features(pts, space, channels_last=True)
    sigma, logits = loop_features_decoded(pts, phases, static, loops, w, basis, per_ray)
    feats = _twin_features(space, loops, pts, phases)  # [F, N, 8]
    want_sigma = feats @ w
    want_logits = torch.einsum("fnk,nck->fnc", feats, basis.repeat_interleave(per_ray, 0))
    torch.testing.assert_close(sigma, want_sigma, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logits, want_logits, rtol=1e-12, atol=1e-12)
    flat = [p for scale in loops for p in scale]
    gs = torch.randn(sigma.shape, generator=gen, dtype=DT)
    gl = torch.randn(logits.shape, generator=gen, dtype=DT)
    got = torch.autograd.grad((sigma * gs).sum() + (logits * gl).sum(), flat)
    want = torch.autograd.grad((want_sigma * gs).sum() + (want_logits * gl).sum(), flat)
    for g, ww in zip(got, want):
        torch.testing.assert_close(g, ww, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="basis must be"):
        loop_features_decoded(pts, phases, static, loops, w, basis[:5], per_ray)


def test_render_phases_matches_render_samples_on_repeated_rays():
    from loopnerf.distill.loop_model import LoopModel
    from loopnerf.model.config import preset, resolve_time_resolution
    from loopnerf.model.kplanes_model import KPlanesModel

    cfg = resolve_time_resolution(preset("tiny"), 6)
    stage1 = KPlanesModel(bounded(cfg.model), [[-1, -1, -1], [1, 1, 1]], seed=0)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for q in stage1.parameters():
            q.add_(0.3 * torch.randn(q.shape, generator=gen))
    loop = LoopModel(stage1, 5, base="mean")
    with torch.no_grad():
        for q in loop.field.loop_planes:
            q.add_(0.2 * torch.randn(q.shape, generator=gen))
    r, f = 40, 5
    o = torch.tensor([0.0, 0.2, 3.0]).expand(r, 3).contiguous()
    d = torch.nn.functional.normalize(torch.tensor([0.0, 0.0, -1.0]) + 0.3 * torch.randn(r, 3, generator=gen), dim=-1)
    with torch.no_grad():
        smp = loop.sample_along_rays(o, d, torch.zeros(r))
    phases = torch.arange(f, dtype=torch.float32) / f
    fused = loop.render_phases(o, d, smp["t_edges"], smp["hit"], phases)
    rep = loop.render_samples(o.repeat(f, 1), d.repeat(f, 1), phases.repeat_interleave(r), smp["t_edges"].repeat(f, 1), smp["hit"].repeat(f))
    torch.testing.assert_close(fused["rgb"], rep["rgb"].view(f, r, 3), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused["depth"], rep["depth"].view(f, r), rtol=1e-4, atol=1e-4)
    planes = list(loop.field.loop_planes)
    up = torch.randn(f, r, 3, generator=gen)
    g_fused = torch.autograd.grad((fused["rgb"] * up).sum(), planes)
    g_rep = torch.autograd.grad((rep["rgb"].view(f, r, 3) * up).sum(), planes)
    for a, b in zip(g_fused, g_rep):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_the_atomic_backward_matches_too(monkeypatch):
    """CUDA's path (one buffer, one task per point, atomic adds), run on the CPU."""
    from loopnerf.kernels import loop_features as lf

    monkeypatch.setattr(lf, "PRIVATE_BUFFERS", False)
    test_features_match_the_repeated_hexplane_in_float64(0)
    test_decoded_logits_match_the_linear_decoder_in_float64()
