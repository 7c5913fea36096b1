"""Decoders from k-Planes features to density and colour.

- `LinearDecoder` (K-Planes "explicit"): density = linear(features); colour =
  sigmoid(basis(d) @ features), where basis(d) [3, C*S] is a small MLP of the SH
  encoding of the ray direction, evaluated once per ray. A renderer can bake the
  basis into a direction table, so no MLP runs per sample: the viewer's choice.
- `MLPDecoder` (K-Planes "hybrid"): a 64-wide sigma net gives density and 15 geometry
  features; a colour net reads them with the SH degree-4 direction encoding.
Density activation: trunc_exp(x - 1) in both.
"""

from __future__ import annotations

import torch
from torch import nn

from loopnerf.fields.activations import trunc_exp
from loopnerf.fields.spherical_harmonics import sh_encode

SH_DEGREE = 4


def _mlp(n_in: int, n_hidden: int, n_layers: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    n = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(n, n_hidden), nn.ReLU(inplace=True)]
        n = n_hidden
    layers.append(nn.Linear(n, n_out))
    return nn.Sequential(*layers)


FUSED_LOGITS = True
"""`LinearDecoder` computes its logits through `_LinearLogits`; False: plain autograd
(`benchmarks/train_step.py`'s `before` and `twins` builds)."""


class _LinearLogits(torch.autograd.Function):
    """The linear decoder's logits with a hand-written backward: colour logits
    [R, S, 3] = features [R, S, F] . basis [R, 3, F] per ray, density logit [R, S] =
    features . weight [F] + bias [1].

    Autograd's own backward of `einsum` + `nn.Linear` spends two batched products with
    an inner size of 3 and an outer product as a [R*S, 1] x [1, F] matrix product,
    then adds the two feature gradients; here the feature gradient is one `baddbmm`
    with the density term as its input (fwd + bwd of a `cpu` training batch: 3.0 vs
    5.0 ms). The plain path (`LinearDecoder.forward(..., fused=False)`) is its twin.
    """

    @staticmethod
    def forward(ctx, features, basis, weight, bias):
        ctx.save_for_backward(features, basis, weight)
        r, s, f = features.shape
        colour = torch.bmm(features, basis.transpose(1, 2))
        density = torch.mv(features.reshape(r * s, f), weight).view(r, s) + bias
        return colour, density

    @staticmethod
    def backward(ctx, g_colour, g_density):
        features, basis, weight = ctx.saved_tensors
        r, s, f = features.shape
        g_colour = g_colour.contiguous()
        g_density = g_density.contiguous()
        need_f, need_b, need_w, need_bias = ctx.needs_input_grad
        g_features = torch.baddbmm(g_density[..., None] * weight, g_colour, basis) if need_f else None
        g_basis = torch.bmm(g_colour.transpose(1, 2), features) if need_b else None
        g_weight = torch.mv(features.reshape(r * s, f).t(), g_density.reshape(-1)) if need_w else None
        g_bias = g_density.sum().reshape(1) if need_bias else None
        return g_features, g_basis, g_weight, g_bias


class LinearDecoder(nn.Module):
    """features [R, S, F] + ray directions [R, 3] -> density [R, S], rgb [R, S, 3]."""

    kind = "linear"

    def __init__(self, feature_dim: int, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.sigma = nn.Linear(feature_dim, 1)
        self.basis = _mlp(SH_DEGREE**2, hidden, layers, 3 * feature_dim)

    def density(self, features: torch.Tensor) -> torch.Tensor:
        return trunc_exp(self.sigma(features).squeeze(-1) - 1.0)

    def direction_basis(self, dirs: torch.Tensor) -> torch.Tensor:
        """Unit directions [M, 3] -> colour basis [M, 3, F]."""
        return self.basis(sh_encode(dirs, SH_DEGREE)).view(-1, 3, self.feature_dim)

    def forward(self, features: torch.Tensor, dirs: torch.Tensor, fused: bool | None = None):
        """fused: the logits through `_LinearLogits` (its backward written out); False:
        plain autograd (the twin); None: `FUSED_LOGITS`."""
        basis = self.direction_basis(dirs)  # once per ray
        if (FUSED_LOGITS if fused is None else fused) and features.dim() == 3:
            colour, density = _LinearLogits.apply(features, basis, self.sigma.weight.view(-1), self.sigma.bias)
            return trunc_exp(density - 1.0), torch.sigmoid(colour)
        rgb = torch.sigmoid(torch.einsum("rsf,rcf->rsc", features, basis))
        return self.density(features), rgb


class MLPDecoder(nn.Module):
    """The hybrid decoder: features [R, S, F] + directions [R, 3] -> density, rgb."""

    kind = "mlp"

    def __init__(self, feature_dim: int, hidden: int = 64, geo_features: int = 15) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.geo_features = geo_features
        self.sigma_net = _mlp(feature_dim, hidden, 1, 1 + geo_features)
        self.color_net = _mlp(SH_DEGREE**2 + geo_features, hidden, 2, 3)

    def density(self, features: torch.Tensor) -> torch.Tensor:
        return trunc_exp(self.sigma_net(features)[..., 0] - 1.0)

    def forward(self, features: torch.Tensor, dirs: torch.Tensor):
        h = self.sigma_net(features)
        density = trunc_exp(h[..., 0] - 1.0)
        sh = sh_encode(dirs, SH_DEGREE)[:, None, :].expand(*h.shape[:-1], SH_DEGREE**2)
        rgb = torch.sigmoid(self.color_net(torch.cat([sh, h[..., 1:]], dim=-1)))
        return density, rgb


def make_decoder(kind: str, feature_dim: int) -> nn.Module:
    if kind == "linear":
        return LinearDecoder(feature_dim)
    if kind == "mlp":
        return MLPDecoder(feature_dim)
    raise ValueError(f"unknown decoder {kind!r}: use 'linear' or 'mlp'")
