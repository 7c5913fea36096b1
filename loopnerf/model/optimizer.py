"""The optimizer of both stages."""

from __future__ import annotations

import torch


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam (eps 1e-15, as K-Planes) with torch's fused implementation where the build
    has it for these tensors' device: one pass over the parameters instead of a dozen."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, eps=1e-15, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or build without fused Adam
        return torch.optim.Adam(params, lr=lr, eps=1e-15)
