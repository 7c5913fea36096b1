"""Lat-long tables over unit directions: the one convention every direction table uses.

A table [Hd, Wd, ...] holds values at directions d: row theta / pi * (Hd - 1) with
theta = acos(d_y) (d_y = up), column (atan2(d_z, d_x) + pi) / (2 pi) * Wd, periodic;
looked up bilinearly. The baked colour basis (`.loop` `decoder.dir_table`), the sky at
infinity (stage 1's `KPlanesModel.sky`, `.loop` `sky`) and the viewer's kernels
(`viewer.march.direction_taps`) all read it this way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def lookup_direction_table(table: "torch.Tensor", dirs: "torch.Tensor") -> "torch.Tensor":
    """Bilinear lookup of a lat-long table [Hd, Wd, 3, K] at unit dirs [N, 3] -> [N, 3, K]."""
    import torch

    Hd, Wd = table.shape[0], table.shape[1]
    d = dirs.float()
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    theta = torch.acos(d[:, 1].clamp(-1.0, 1.0))
    row = (theta / math.pi * (Hd - 1)).clamp(0, Hd - 1)
    r0 = torch.floor(row).long().clamp(max=Hd - 2)
    wr = (row - r0.to(row.dtype))[:, None, None]
    col = (torch.atan2(d[:, 2], d[:, 0]) + math.pi) / (2 * math.pi) * Wd
    c0f = torch.floor(col)
    wc = (col - c0f)[:, None, None]
    c0 = c0f.long() % Wd
    c1 = (c0 + 1) % Wd
    r1 = r0 + 1
    top = table[r0, c0] * (1 - wc) + table[r0, c1] * wc
    bottom = table[r1, c0] * (1 - wc) + table[r1, c1] * wc
    return top * (1 - wr) + bottom * wr
