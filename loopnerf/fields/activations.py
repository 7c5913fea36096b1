"""Density activation: exp with a clamped gradient (mip-NeRF 360 / K-Planes)."""

from __future__ import annotations

import torch


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        # the clamp keeps one huge pre-activation from blowing up the step
        return g * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) whose backward uses exp(clamp(x, -15, 15))."""
    return _TruncExp.apply(x)
