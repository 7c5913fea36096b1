"""3D patches of videos: the patch grid, circular padding, nearest-patch matching.

Shared by the looping loss (`loopnerf.distill.looping_loss`) and the loop metrics
(`loopnerf.evaluation.metrics`), so neither stage imports the other.

Conventions: videos are `[T, H, W, C]` float tensors (frames, rows, columns, channels;
C = 3 for RGB, values usually in [0, 1]). Patch distances are mean squared differences
per element (sum of squares / (C * frames * patch * patch)), so thresholds and alpha
do not depend on the patch size.

Patch grid: along each axis the patch starts are 0, step, 2 step, ... plus, where the
last regular patch stops short of the border, one more patch flush with the border, so
every pixel of every frame is covered by at least one patch (VideoLoop3D instead crops
the uncovered border away). The same grid cuts both videos, so positions correspond.

Memory: the distances of one spatial position are [Tq, Tp] (query x pool time patches);
positions are processed in blocks of `block` (default: sized to ~16M numbers), and the
result does not depend on the block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

# Default budget for one block: numbers held for the distance matrix plus the gathered
# patches of one block of spatial positions (float32: 4 bytes each, so ~64 MB).
_BLOCK_BUDGET = 1 << 24


def patch_starts(length: int, size: int, step: int) -> torch.Tensor:
    """[n] int64 start indices of patches of `size` along an axis of `length`, every `step`.

    A last start flush with the end is added when the regular ones leave a border
    uncovered, so the patches cover all `length` entries.
    """
    if size > length:
        raise ValueError(f"patch size {size} is larger than the axis ({length})")
    if step < 1:
        raise ValueError(f"stride must be >= 1, got {step}")
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return torch.tensor(starts, dtype=torch.long)


@dataclass(frozen=True)
class PatchGrid:
    """Where the 3D patches of a set of videos of one size [T, H, W, C] lie.

    Attributes:
        frames, patch: patch extent in frames and in pixels (square).
        t_starts: [nt] first frame of each time position (of the query video).
        y_starts: [ny] first row of each spatial position.
        x_starts: [nx] first column of each spatial position.
    """

    frames: int
    patch: int
    t_starts: torch.Tensor
    y_starts: torch.Tensor
    x_starts: torch.Tensor

    @property
    def positions(self) -> int:
        """Number of spatial patch positions (ny * nx)."""
        return len(self.y_starts) * len(self.x_starts)

    def position_starts(self, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column starts ([B], [B]) of the spatial positions first..last-1 (row-major)."""
        idx = torch.arange(first, last)
        nx = len(self.x_starts)
        return self.y_starts[idx // nx], self.x_starts[idx % nx]


def _spatial_patches(video: torch.Tensor, patch: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """[B, T, patch * patch * C] the patch x patch squares of every frame of video [T, H, W, C] at [B] starts.

    Indexing a strided view (ordered like memory: rows, columns, channels innermost)
    copies each square as one block; time patches are never materialised (their dot
    products are sums of these per-frame ones).
    """
    view = video.unfold(1, patch, 1).unfold(2, patch, 1)  # [T, H', W', C, p, p]
    view = view.permute(1, 2, 0, 4, 5, 3)  # [H', W', T, p, p, C]
    dev = video.device
    squares = view[ys.to(dev), xs.to(dev)]  # [B, T, p, p, C]
    return squares.reshape(squares.shape[0], squares.shape[1], -1)


def _time_patches(squares: torch.Tensor, starts: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, n, frames * k] time patches starting at `starts` [n] from per-frame squares [B, T, k]."""
    idx = starts.to(squares.device)[:, None] + torch.arange(frames, device=squares.device)
    b, n = squares.shape[0], len(starts)
    return squares[:, idx.reshape(-1)].reshape(b, n, -1)


def _select(values: torch.Tensor, dim: int, starts: torch.Tensor) -> torch.Tensor:
    """values.index_select(dim, starts), skipped when starts is every index."""
    if len(starts) == values.shape[dim]:
        return values
    return values.index_select(dim, starts.to(values.device))


def _time_sum(values: torch.Tensor, starts_a: torch.Tensor, starts_b, frames: int) -> torch.Tensor:
    """Sums over f of values[:, a + f] (or values[:, a + f, b + f] when starts_b is given), f = 0..frames-1.

    values [B, Ta] or [B, Ta, Tb]; returns [B, na] or [B, na, nb]. The sums run over
    every start as slices (cheap views) in a fixed order, then the wanted starts are
    picked, so each position's result does not depend on the block it is computed in.
    """
    na = values.shape[1] - frames + 1
    if starts_b is None:
        out = sum(values[:, f : f + na] for f in range(frames))
        return _select(out, 1, starts_a)
    nb = values.shape[2] - frames + 1
    out = sum(values[:, f : f + na, f : f + nb] for f in range(frames))
    return _select(_select(out, 1, starts_a), 2, starts_b)


def _fold_index(
    t_starts: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, frames: int, patch: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors (broadcast to [B, nt, f, p, p]) of the pixels of each patch, for folding."""
    ar_t = torch.arange(frames, device=device)
    ar_p = torch.arange(patch, device=device)
    ti = (t_starts.to(device)[:, None] + ar_t)[None, :, :, None, None]  # [1, nt, f, 1, 1]
    yi = (ys.to(device)[:, None] + ar_p)[:, None, None, :, None]  # [B, 1, 1, p, 1]
    xi = (xs.to(device)[:, None] + ar_p)[:, None, None, None, :]  # [B, 1, 1, 1, p]
    return torch.broadcast_tensors(ti, yi, xi)


def _check_videos(query: torch.Tensor, pool: torch.Tensor, frames: int, patch: int) -> None:
    if query.ndim != 4 or pool.ndim != 4:
        raise ValueError(f"videos must be [T, H, W, C], got {tuple(query.shape)} and {tuple(pool.shape)}")
    if query.shape[1:] != pool.shape[1:]:
        raise ValueError(
            f"videos must share [H, W, C]: {tuple(query.shape[1:])} vs {tuple(pool.shape[1:])}"
        )
    if frames > query.shape[0] or frames > pool.shape[0]:
        raise ValueError(
            f"patches of {frames} frames do not fit videos of {query.shape[0]} and {pool.shape[0]} frames"
        )
    if patch > query.shape[1] or patch > query.shape[2]:
        raise ValueError(f"patches of {patch} px do not fit frames of {query.shape[2]}x{query.shape[1]}")


@dataclass
class PatchMatchBlock:
    """Nearest neighbours of one block of spatial positions.

    Attributes:
        query: [B, nq, d] query patches; pool_matched: [B, nq, d] the matched pool patches.
        distance: [B, nq] mean squared difference of each query patch to its match
            (the plain distance, also when alpha was used to choose the match).
        pool_min_distance: [B, np] each pool patch's smallest distance to any query patch.
        ys, xs: [B] row and column starts of the block's positions; tq: [nq] query time starts.

    Patches are flattened in (frame, row, column, channel) order.
    """

    query: torch.Tensor
    pool_matched: torch.Tensor
    distance: torch.Tensor
    pool_min_distance: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor
    tq: torch.Tensor


@torch.no_grad()
def match_patches(
    query: torch.Tensor,
    pool: torch.Tensor,
    *,
    patch: int = 3,
    frames: int = 3,
    stride: int = 2,
    frame_stride: int = 1,
    alpha: Optional[float] = None,
    block: Optional[int] = None,
) -> Iterator[PatchMatchBlock]:
    """Match every 3D patch of `query` to its nearest patch of `pool` at the same position.

    Args:
        query: [Tq, H, W, C] video whose patches are matched (e.g. the padded loop).
        pool: [Tp, H, W, C] video whose patches are the candidates (e.g. the reference).
        patch, frames, stride, frame_stride: patch size in pixels / frames and strides;
            the same grid cuts both videos (see the module docstring).
        alpha: None = plain nearest neighbour; a float = completeness normalisation
            (distance / (alpha + pool patch's smallest distance to any query patch),
            with the denominator clamped at 1e-12 so alpha = 0 stays finite).
        block: spatial positions per block (None = sized to ~16M numbers).

    Yields one `PatchMatchBlock` per block of spatial positions, in row-major order.
    """
    _check_videos(query, pool, frames, patch)
    pool = pool.detach().to(query.dtype)
    query = query.detach()
    h, w = query.shape[1:3]
    grid_y = patch_starts(h, patch, stride)
    grid_x = patch_starts(w, patch, stride)
    tq = patch_starts(query.shape[0], frames, frame_stride)
    tp = patch_starts(pool.shape[0], frames, frame_stride)
    d = frames * patch * patch * query.shape[3]
    n_pos = len(grid_y) * len(grid_x)
    if block is None:
        # gram + cross + distances, the per-frame squares, and the matched/query patches
        per_position = 3 * query.shape[0] * pool.shape[0] + (query.shape[0] + pool.shape[0]) * d // frames + 2 * len(tq) * d
        block = max(1, _BLOCK_BUDGET // per_position)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    grid = PatchGrid(frames, patch, tq, grid_y, grid_x)
    for first in range(0, n_pos, block):
        ys, xs = grid.position_starts(first, min(first + block, n_pos))
        qs = _spatial_patches(query, patch, ys, xs)  # [B, Tq, k]
        ps = _spatial_patches(pool, patch, ys, xs)  # [B, Tp, k]
        # Mean squared distance |q|^2 + |p|^2 - 2 q.p of time patches, from per-frame
        # dot products: one [Tq, Tp] matmul per position instead of materialising every
        # reference time patch (frames times more memory and data movement).
        gram = torch.bmm(qs, ps.transpose(1, 2))  # [B, Tq, Tp]
        qq = _time_sum((qs * qs).sum(-1), tq, None, frames)  # [B, nq]
        pp = _time_sum((ps * ps).sum(-1), tp, None, frames)  # [B, np]
        cross = _time_sum(gram, tq, tp, frames)  # [B, nq, np]
        dist = (qq[:, :, None] + pp[:, None, :] - 2.0 * cross).clamp_min_(0.0) / d
        pool_min = dist.min(dim=1).values  # [B, np]
        if alpha is None:
            choice = dist
        else:
            choice = dist / (alpha + pool_min[:, None, :]).clamp_min(1e-12)
        nn = choice.argmin(dim=2)  # [B, nq]
        matched_starts = tp.to(nn.device)[nn]  # [B, nq] first reference frame of each match
        frame_idx = matched_starts[..., None] + torch.arange(frames, device=nn.device)  # [B, nq, f]
        matched = torch.gather(
            ps, 1, frame_idx.reshape(len(ys), -1, 1).expand(-1, -1, ps.shape[2])
        ).reshape(len(ys), len(tq), -1)
        yield PatchMatchBlock(
            query=_time_patches(qs, tq, frames),
            pool_matched=matched,
            distance=torch.gather(dist, 2, nn[..., None])[..., 0],
            pool_min_distance=pool_min,
            ys=ys,
            xs=xs,
            tq=tq,
        )


@torch.no_grad()
def nearest_patch_target(
    query: torch.Tensor,
    pool: torch.Tensor,
    *,
    patch: int = 3,
    frames: int = 3,
    stride: int = 2,
    frame_stride: int = 1,
    alpha: Optional[float] = None,
    block: Optional[int] = None,
) -> torch.Tensor:
    """[Tq, H, W, C] the video made of `query`'s nearest `pool` patches, folded back.

    Each query patch is replaced by its match (see `match_patches`); where patches
    overlap their values are averaged. The grid covers every pixel, so every entry is
    defined. No gradient.
    """
    t, h, w, c = query.shape
    # folded on flat pixel indices: index_add_ and bincount are 3.4x faster on the CPU
    # than index_put_(accumulate=True) on the [T, H, W] index triple (a distillation
    # step's fold: 10.6 -> 3.1 ms)
    total = torch.zeros(t * h * w, c, dtype=query.dtype, device=query.device)
    count = torch.zeros(t * h * w, dtype=torch.long, device=query.device)
    for m in match_patches(
        query, pool, patch=patch, frames=frames, stride=stride, frame_stride=frame_stride, alpha=alpha, block=block
    ):
        ti, yi, xi = _fold_index(m.tq, m.ys, m.xs, frames, patch, query.device)  # each [B, nq, f, p, p]
        flat = ((ti * h + yi) * w + xi).reshape(-1)
        total.index_add_(0, flat, m.pool_matched.reshape(-1, c))
        count += torch.bincount(flat, minlength=t * h * w)
    return (total / count[:, None].to(query.dtype)).view(t, h, w, c)


def pad_loop(rendered: torch.Tensor, frames: int) -> torch.Tensor:
    """[F + frames - 1, H, W, C]: the loop followed by its first `frames - 1` frames (circularly).

    The padding repeats the loop as often as needed when F < frames - 1.
    """
    f = rendered.shape[0]
    idx = torch.arange(f + frames - 1, device=rendered.device) % f
    return rendered[idx]
