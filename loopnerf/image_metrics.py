"""Per-image fidelity: PSNR and SSIM (numpy arrays or torch tensors in [0, 1]).

Images are [H, W, C] or [N, H, W, C]; masks [H, W] (or broadcastable to the image's
leading axes) with True = pixel counts. Both return a Python float. SSIM: Gaussian
window 11 px, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, population statistics;
averaged over the windows that lie fully inside the image, like scikit-image's
`gaussian_weights=True`. Stage 1 scores its held-out frames with these, the loop
metrics (`loopnerf.evaluation.metrics`) build on them.
"""

from __future__ import annotations

import math

import numpy as np


def as_float64(x):
    """A float64 CPU-or-same-device torch tensor view of x (numpy or torch)."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.array(x, dtype=np.float64))  # a copy: the input may be read-only


def mask_weights(mask, shape, device):
    """[*shape[:-1], 1] float64 weights from a bool mask broadcastable to the pixel axes."""
    import torch

    m = as_float64(mask).to(device)
    return torch.broadcast_to(m, shape[:-1])[..., None]


def psnr(a, b, mask=None, max_value: float = 1.0) -> float:
    """PSNR in dB between a and b ([..., H, W, C]); over the masked pixels if mask [..., H, W] is given.

    Identical inputs give +inf.
    """
    ta, tb = as_float64(a), as_float64(b)
    if ta.shape != tb.shape:
        raise ValueError(f"psnr: shapes differ {tuple(ta.shape)} vs {tuple(tb.shape)}")
    err = (ta - tb) ** 2
    if mask is None:
        mse = float(err.mean())
    else:
        w = mask_weights(mask, err.shape, err.device)
        total = float(w.sum()) * err.shape[-1]
        if total == 0:
            raise ValueError("psnr: the mask selects no pixel")
        mse = float((err * w).sum()) / total
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def _gaussian_kernel(size: int = 11, sigma: float = 1.5):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a, b, mask=None, *, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> float:
    """Mean SSIM between images a, b ([H, W, C] or [N, H, W, C]) with a Gaussian window.

    The SSIM map is computed for every window fully inside the image ('valid'
    filtering) and averaged over those windows and the channels; with `mask` [H, W]
    (or [N, H, W]) only windows whose centre pixel is masked count.
    """
    import torch
    import torch.nn.functional as F

    ta, tb = as_float64(a), as_float64(b)
    if ta.shape != tb.shape:
        raise ValueError(f"ssim: shapes differ {tuple(ta.shape)} vs {tuple(tb.shape)}")
    if ta.ndim == 3:
        ta, tb = ta[None], tb[None]
    n, h, w, c = ta.shape
    if h < window or w < window:
        raise ValueError(f"ssim: images of {w}x{h} are smaller than the {window}-px window")
    g = _gaussian_kernel(window, sigma).to(ta.device)
    kernel_y = g.view(1, 1, window, 1).expand(c, 1, window, 1)
    kernel_x = g.view(1, 1, 1, window).expand(c, 1, 1, window)

    def blur(x):  # [n, c, h, w] -> separable Gaussian, valid region only
        return F.conv2d(F.conv2d(x, kernel_y, groups=c), kernel_x, groups=c)

    x = ta.permute(0, 3, 1, 2)
    y = tb.permute(0, 3, 1, 2)
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    if mask is None:
        return float(smap.mean())
    pad = (window - 1) // 2
    m = torch.broadcast_to(as_float64(mask).to(ta.device), (n, h, w))[:, pad : h - pad, pad : w - pad]
    m = m[:, None].expand_as(smap)
    if float(m.sum()) == 0:
        raise ValueError("ssim: the mask selects no window centre")
    return float((smap * m).sum() / m.sum())
