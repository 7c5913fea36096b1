"""The linear decoder's fused logits (`_LinearLogits`, a hand-written backward) against
plain autograd, in float64."""
import torch

from loopnerf.fields.decoders import LinearDecoder, _LinearLogits


def test_logits_backward_passes_gradcheck():
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    basis = torch.randn(3, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_LinearLogits.apply, (f, basis, w, b))


def test_fused_decoder_matches_plain_autograd():
    torch.manual_seed(0)
    dec = LinearDecoder(12).double()
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(6, 7, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    dirs = torch.nn.functional.normalize(torch.randn(6, 3, generator=gen, dtype=torch.float64), dim=-1)
    up_d = torch.randn(6, 7, generator=gen, dtype=torch.float64)
    up_c = torch.randn(6, 7, 3, generator=gen, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        dec.zero_grad(set_to_none=True)
        density, rgb = dec(feats, dirs, fused=fused)
        g_feat, = torch.autograd.grad((density * up_d).sum() + (rgb * up_c).sum(), [feats], retain_graph=True)
        ((density * up_d).sum() + (rgb * up_c).sum()).backward()
        grads.append((density.detach(), rgb.detach(), g_feat, [p.grad.clone() for p in dec.parameters()]))
    (d1, c1, gf1, gp1), (d0, c0, gf0, gp0) = grads
    torch.testing.assert_close(d1, d0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c1, c0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gf1, gf0, rtol=1e-10, atol=1e-12)
    for a, b in zip(gp1, gp0):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
