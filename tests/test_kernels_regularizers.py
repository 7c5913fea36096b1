"""The fused plane-regularizer kernel against its plain-PyTorch twin (`model.losses` under
autograd): values and gradients in float64 on fresh random planes, the model-level
wrappers of both stages in float32, and accumulation into an existing `.grad`."""

from __future__ import annotations

import pytest
import torch

from fixtures.bounded import bounded

from loopnerf.kernels.plane_regularizers import plane_regularizer_grads, regularizer_grads_of_planes
from loopnerf.model import losses as L


def _twin(p, tv_w, tv_h, smooth, l1, circular, anchor):
    a = torch.ones(p.shape[1:], dtype=p.dtype) if anchor is None else anchor
    out = tv_w * (p[:, 1:] - p[:, :-1]).square().mean()
    if tv_h:
        out = out + tv_h * (p[1:] - p[:-1]).square().mean()
    if smooth:
        if circular:
            out = out + smooth * (torch.roll(p, -1, 0) - 2 * p + torch.roll(p, 1, 0)).square().mean()
        else:
            out = out + smooth * L.time_smoothness([p])
    return out + l1 * (a[None] - p).abs().mean()


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize("shape", [(3, 2, 4), (7, 5, 3), (24, 17, 8), (2, 9, 16)])
def test_values_and_gradients_match_the_twin_in_float64(shape, circular):
    gen = torch.Generator().manual_seed(hash((shape, circular)) % 1000)
    p = (1.0 + 0.3 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()
    anchor = torch.randn(shape[1], shape[2], generator=gen, dtype=torch.float64) if circular else None
    # some entries exactly at the anchor: |a - p| has gradient 0 there in both
    with torch.no_grad():
        p[0, 0] = 1.0 if anchor is None else anchor[0]
    weights = dict(tv_w=0.7, tv_h=0.0 if circular else 0.4, smooth=0.3, l1=0.2)
    ref = _twin(p, circular=circular, anchor=anchor, **weights)
    ref.backward()
    grad = torch.zeros_like(p)
    value = plane_regularizer_grads(p.detach(), grad, circular=circular, anchor=anchor, **weights)
    assert float(value) == pytest.approx(float(ref), rel=1e-12, abs=1e-14)
    torch.testing.assert_close(grad, p.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("circular,channels", [(False, 16), (True, 8), (False, 3)])
def test_planes_of_different_shapes_in_groups_match_the_twin_in_float64(circular, channels):
    """Seven planes of different widths and heights: three launches of up to three
    planes (the last one partly used), each plane's terms a mean over its own size."""
    gen = torch.Generator().manual_seed(channels + int(circular))
    shapes = [(6, 5), (4, 9), (7, 3), (5, 5), (3, 12), (8, 2), (6, 7)]
    planes = [(1.0 + 0.3 * torch.randn(h, w, channels, generator=gen, dtype=torch.float64)).requires_grad_() for h, w in shapes]
    anchors = [torch.randn(w, channels, generator=gen, dtype=torch.float64) if circular else None for _, w in shapes]
    weights = dict(tv_w=0.5, tv_h=0.0 if circular else 0.3, smooth=0.2, l1=0.1)
    ref = sum(_twin(p, circular=circular, anchor=a, **weights) for p, a in zip(planes, anchors))
    ref.backward()
    grads = [torch.zeros_like(p) for p in planes]
    value = regularizer_grads_of_planes([p.detach() for p in planes], grads, circular=circular, anchors=anchors, **weights)
    assert float(value) == pytest.approx(float(ref), rel=1e-12)
    for g, p in zip(grads, planes):
        torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="channels"):
        regularizer_grads_of_planes([planes[0].detach(), torch.zeros(3, 3, channels + 1, dtype=torch.float64)],
                                    [grads[0], torch.zeros(3, 3, channels + 1, dtype=torch.float64)])


def test_gradient_is_added_to_what_is_there():
    p = torch.rand(5, 4, 2, dtype=torch.float64)
    base = torch.full_like(p, 3.0)
    once = torch.zeros_like(p)
    plane_regularizer_grads(p, once, tv_w=1.0, tv_h=1.0, smooth=1.0, l1=1.0)
    plane_regularizer_grads(p, base, tv_w=1.0, tv_h=1.0, smooth=1.0, l1=1.0)
    torch.testing.assert_close(base, once + 3.0)
    with pytest.raises(ValueError, match="contiguous"):
        plane_regularizer_grads(p.transpose(0, 1), once.transpose(0, 1), tv_w=1.0)


def _perturb(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for q in module.parameters():
            q.add_(0.2 * torch.randn(q.shape, generator=gen))


def test_stage1_model_fused_regularizers_match_autograd():
    from loopnerf.model.config import LossWeights, preset
    from loopnerf.model.kplanes_model import KPlanesModel
    from loopnerf.model.config import resolve_time_resolution

    cfg = resolve_time_resolution(preset("tiny"), 6)
    model = KPlanesModel(bounded(cfg.model), [[-1, -1, -1], [1, 1, 1]], seed=0)
    _perturb(model, 1)
    w = LossWeights(plane_tv=0.3, plane_tv_proposal=0.2, l1_time=0.05, l1_time_proposal=0.04, time_smoothness=0.5, time_smoothness_proposal=0.1)
    ref_terms = model.regularizers(w)
    ref = sum(ref_terms.values())
    ref.backward()
    ref_grads = {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None}
    model.zero_grad(set_to_none=True)
    fused = model.add_regularizer_grads(w)["plane_regularizers"]
    assert float(fused) == pytest.approx(float(ref), rel=1e-5)
    for n, q in model.named_parameters():
        if n in ref_grads:
            torch.testing.assert_close(q.grad, ref_grads[n], rtol=1e-4, atol=1e-7, msg=n)
    assert len(ref_grads) >= 3 * 6  # every plane of the field and the proposal was regularized


def test_loop_model_fused_regularizers_match_autograd():
    from loopnerf.distill.loop_model import LoopModel, add_loop_regularizer_grads
    from loopnerf.distill.train import _Weights
    from loopnerf.model.config import preset, resolve_time_resolution
    from loopnerf.model.kplanes_model import KPlanesModel

    cfg = resolve_time_resolution(preset("tiny"), 6)
    stage1 = KPlanesModel(bounded(cfg.model), [[-1, -1, -1], [1, 1, 1]], seed=0)
    _perturb(stage1, 2)
    loop = LoopModel(stage1, 5, base="mean")
    _perturb(loop.field.loop_planes, 3)
    w = _Weights(plane_tv=0.3, time_smoothness=0.5, l1_time=0.07)
    ref = sum(loop.loop_regularizers(w).values())
    ref.backward()
    ref_grads = [q.grad.clone() for q in loop.field.loop_planes]
    loop.zero_grad(set_to_none=True)
    fused = add_loop_regularizer_grads(loop, w)["plane_regularizers"]
    assert float(fused) == pytest.approx(float(ref), rel=1e-5)
    for q, g in zip(loop.field.loop_planes, ref_grads):
        torch.testing.assert_close(q.grad, g, rtol=1e-4, atol=1e-7)
