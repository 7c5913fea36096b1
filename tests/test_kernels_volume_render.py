"""Taichi volume rendering against its plain-PyTorch twin and known answers."""
import math

import pytest
import torch

from loopnerf.kernels import reference, volume_render


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def make_rays(rays, samples, channels, dtype, seed):
    """Random rays; ray 0 is empty, ray 1 hits a very dense sample, ray 2 is dense everywhere."""
    gen = torch.Generator().manual_seed(seed)
    sigmas = torch.rand(rays, samples, generator=gen, dtype=dtype) * 8
    sigmas[0] = 0
    if rays > 2:
        sigmas[1, samples // 2] = 1e7
        sigmas[2] = 1e6
    colors = torch.rand(rays, samples, channels, generator=gen, dtype=dtype)
    deltas = torch.rand(rays, samples, generator=gen, dtype=dtype) * (4.0 / samples) + 1e-3
    return [t.requires_grad_(True) for t in (sigmas, colors, deltas)]


def compare(inputs, tol, seed=0):
    got = volume_render(*inputs)
    want = reference.volume_render(*inputs)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert rel_err(g, w) <= tol
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in want]
    g_got = torch.autograd.grad(got, inputs, upstream)
    g_want = torch.autograd.grad(want, inputs, upstream)
    for name, g, w in zip(("sigmas", "colors", "deltas"), g_got, g_want):
        assert torch.isfinite(g).all(), name
        assert rel_err(g, w) <= tol, name


@pytest.mark.parametrize("rays,samples,channels", [(9, 1, 3), (12, 7, 1), (6, 256, 3), (5, 33, 5)])
def test_matches_reference_float64(rays, samples, channels):
    compare(make_rays(rays, samples, channels, torch.float64, seed=samples), tol=1e-6, seed=rays)


@pytest.mark.parametrize("samples", [1, 48, 256])
def test_matches_reference_float32(samples):
    compare(make_rays(64, samples, 3, torch.float32, seed=samples + 1), tol=1e-4, seed=2)


def test_only_color_or_only_weights_used():
    inputs = make_rays(8, 16, 3, torch.float64, seed=5)
    for pick in (0, 1):
        got = torch.autograd.grad(volume_render(*inputs)[pick].sum(), inputs)
        # weights alone do not depend on the colors: their reference gradient is zero
        want = torch.autograd.grad(
            reference.volume_render(*inputs)[pick].sum(), inputs, allow_unused=True, materialize_grads=True
        )
        for g, w in zip(got, want):
            assert rel_err(g, w) <= 1e-9


def test_known_answers():
    # one sample with sigma * delta = ln 2: alpha = weight = 1/2
    sig = torch.tensor([[math.log(2.0)]], dtype=torch.float64)
    col = torch.tensor([[[0.2, 0.4, 0.8]]], dtype=torch.float64)
    color, weights = volume_render(sig, col, torch.ones_like(sig))
    assert torch.allclose(weights, torch.tensor([[0.5]], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(color, 0.5 * col[0], atol=1e-15)
    # empty space renders nothing; an opaque first sample takes all the weight
    s = torch.zeros(2, 5, dtype=torch.float64)
    s[1, 0] = 1e9
    c = torch.rand(2, 5, 3, dtype=torch.float64)
    color, weights = volume_render(s, c, torch.full_like(s, 0.1))
    assert torch.all(weights[0] == 0) and torch.all(color[0] == 0)
    assert weights[1, 0] == 1 and torch.all(weights[1, 1:] == 0)
    assert torch.allclose(color[1], c[1, 0])
    # two samples of alpha 1/2: weights 1/2, 1/4
    s = torch.full((1, 2), math.log(2.0), dtype=torch.float64)
    _, weights = volume_render(s, torch.zeros(1, 2, 1, dtype=torch.float64), torch.ones_like(s))
    assert torch.allclose(weights, torch.tensor([[0.5, 0.25]], dtype=torch.float64), atol=1e-15)


def test_gradcheck():
    sigmas, colors, deltas = make_rays(4, 6, 2, torch.float64, seed=9)
    with torch.no_grad():
        sigmas[1] = torch.rand(6, dtype=torch.float64) * 3  # gradcheck needs no 1e7-scale densities
        sigmas[2] = torch.rand(6, dtype=torch.float64) * 3
    assert torch.autograd.gradcheck(volume_render, (sigmas, colors, deltas), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradient_not_doubled_on_leaves_and_repeated_backward():
    inputs = [torch.nn.Parameter(t.detach()) for t in make_rays(6, 10, 3, torch.float64, seed=3)]

    def loss_of(fn):
        color, weights = fn(*inputs)
        return color.square().sum() + (weights * torch.arange(10.0, dtype=torch.float64)).sum()

    want = torch.autograd.grad(loss_of(reference.volume_render), inputs)
    loss = loss_of(volume_render)
    assert all(t.grad is None for t in inputs)  # forward leaves .grad alone
    loss.backward(retain_graph=True)
    for t, w in zip(inputs, want):
        assert rel_err(t.grad, w) <= 1e-9
    loss.backward()
    for t, w in zip(inputs, want):
        assert rel_err(t.grad, 2 * w) <= 1e-9


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        volume_render(torch.zeros(2, 3), torch.zeros(2, 4, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError):
        volume_render(torch.zeros(2, 3), torch.zeros(2, 3, 3, dtype=torch.float64), torch.zeros(2, 3))
