"""A sparse brick grid of a baked loop: what makes a viewer sample cheap.

A sample of the `.loop` planes costs 3 bilinear + 3 linear lookups x C channels x S
scales and a C*S-long dot product for each colour channel. For a renderer that is
too much, so at load time the loop is resampled once into a grid of small bricks:

- the voxel grid has the finest plane's resolution: N_a = R_a * max(scales) - 1
  cells per axis over the normalised cube [-1, 1]^3, corners at x = -1 + 2 i / N_a
  (the finest planes' own sample positions, align_corners);
- it is cut into bricks of B^3 cells; a brick exists only where the `.loop`'s
  occupancy grid (after visibility culling) has an occupied cell, and stores its
  (B+1)^3 corners (an apron, so a trilinear lookup never leaves its brick);
- per corner: the log density (density = exp(value), per world unit) and k colour
  coordinates z, a low-rank code of the C*S features: the colour logits are
  B(d) f ~= g(d) + G(d) z with g = B m, G = B L V_k, z = V_k^T L^-1 (f - m), where
  m and L L^T are the mean and covariance of the features of the visible corners and
  V_k the top-k right singular vectors of the stacked direction table times L (the
  rank-k code that best reproduces the colour logits over all directions);
- a brick whose values change over the loop by more than a tolerance is stored once
  per loop frame (F slots), the others once (their frame mean): the moving part of
  the scene per frame, the still part shared, as in VideoLoop3D's static/looping
  tiles.

So a sample is one trilinear lookup of the log density and, only where it weighs,
one of k colour channels (two of each, blended, in a moving brick between frames).
`build_bricks` is built in seconds from a `BakedLoop` (torch, on the CPU); the
`Renderer` does it once when it loads a `.loop`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from loopnerf.export.loop_format import BakedLoop

BRICK_CELLS = 8  # B: cells per brick edge
COLOUR_RANK = 10  # k: colour coordinates per corner (8 on the demo loop: 34.9 dB vs the exact integral at a still camera, 10: 38.4 dB, 12: 40.8 dB)
# A brick is stored per frame when, at some corner and frame, its log density moves by
# more than this where the density matters (alpha over one cell > ALPHA_FLOOR) ...
DYNAMIC_LOG_DENSITY = 0.02
# ... or its colour logits (any channel, any direction) by more than this.
DYNAMIC_COLOUR_LOGIT = 0.02
ALPHA_FLOOR = 1e-3
CHUNK_BRICKS = 128  # bricks evaluated at once (bounds the memory of a build)
MAX_MEGABYTES = 1536.0  # the largest grid the renderer builds by default (the demo loop's: 0.59 GB)
BUILDER_VERSION = 1
"""Bump when `build_bricks` makes another grid from the same loop and settings: the
brick cache (`brick_cache`) keys its files by it."""


def build_settings() -> dict[str, Any]:
    """The settings that shape a grid `build_bricks` makes with its defaults (the cache key)."""
    return {"builder": BUILDER_VERSION, "brick": BRICK_CELLS, "rank": COLOUR_RANK, "alpha_floor": ALPHA_FLOOR,
            "dynamic_log_density": DYNAMIC_LOG_DENSITY, "dynamic_colour_logit": DYNAMIC_COLOUR_LOGIT}


def grid_megabytes(grid: "BrickGrid") -> float:
    """What a grid's voxel arrays (log density + colour code) hold, MB (what the budget counts)."""
    return (grid.log_density.nbytes + grid.colour.nbytes) / 1e6


@dataclass
class BrickGrid:
    """The sparse brick grid (numpy arrays, float16 / uint8 / int32, as the kernel reads them).

    cells: (Nx, Ny, Nz) voxel cells per axis over [-1, 1]; brick: B; rank: k.
    slot [Bx, By, Bz] int32: first slot of each brick, -1 where there is none.
    dynamic [Bx, By, Bz] int32: 1 when the brick moves (F slots: slot + frame), else 0.
    log_density [n_slots * (B+1)^3] float16: corner (i, j, l) of slot s at
        s * (B+1)^3 + (i * (B+1) + j) * (B+1) + l; density = exp(value) per world unit.
    colour [n_slots * (B+1)^3 * k] uint8: the k colour coordinates q, same order, in
        8 bits (`code_quantisation`: z = lo + step * q; the steps are folded into the
        table). The grid is memory-bound: the demo loop's needed 1.5 GB in float32 and
        1.09 GB with a float16 code; log density in float16, to ~1e-3 relative; the
        8-bit code costs 0.03 dB against the exact integral there (38.32 -> 38.29 dB
        worst) and makes a 320x240 frame faster.
    colour_table [Hd, Wd, 3, k + 1] float32: per direction of the `.loop`'s lat-long
        table, G(d) (first k) and g(d) (last) of the stored code q:
        colour = sigmoid(G(d) q + g(d)).
    stats: build figures (seconds, bricks, dynamic bricks, colour energy kept, MB).
    """

    cells: tuple[int, int, int]
    brick: int
    rank: int
    frames: int
    slot: np.ndarray
    dynamic: np.ndarray
    log_density: np.ndarray
    colour: np.ndarray
    colour_table: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def corners(self) -> int:
        return (self.brick + 1) ** 3

    def frame_density_bounds(self, occupancy_shape: tuple[int, int, int]) -> np.ndarray:
        """float32 [F, Gx, Gy, Gz]: per loop frame, the largest density (1/world unit) any
        point of each occupancy cell can have in this grid - the max over the corners
        of every voxel that overlaps the cell (a trilinear value never exceeds its
        corners), 0 where no brick is. Between two frames the blended log density is
        at most the larger of the two, so max(bound[f0], bound[f1]) bounds every phase.
        """
        import torch

        B = self.brick
        B1 = B + 1
        dims = self.slot.shape
        n_vox = [d * B for d in dims]
        where = np.argwhere(self.slot >= 0)
        slots = torch.as_tensor(self.slot[tuple(where.T)], dtype=torch.long)
        moving = torch.as_tensor(self.dynamic[tuple(where.T)] != 0)
        logd = torch.as_tensor(self.log_density).float().reshape(-1, B1, B1, B1)
        # each voxel's largest corner, from its own brick's corners (what the renderer
        # interpolates), once per slot: [slots, B, B, B]
        vmax = torch.nn.functional.max_pool3d(logd[:, None], kernel_size=2, stride=1)[:, 0]
        offs = torch.arange(B)
        b = torch.as_tensor(where, dtype=torch.long)
        ii, jj, ll = (b[:, a, None] * B + offs[None, :] for a in range(3))
        G = [int(g) for g in occupancy_shape]

        def cells_of(sel: "torch.Tensor", slot_ids: "torch.Tensor") -> "torch.Tensor":
            """Max log density per occupancy cell [G] over the voxels of the bricks `sel` (slots `slot_ids`)."""
            lattice = torch.full(n_vox, -80.0)
            lattice[ii[sel][:, :, None, None], jj[sel][:, None, :, None], ll[sel][:, None, None, :]] = vmax[slot_ids]
            return _pool_to_cells(lattice, self.cells, G)

        # Voxels partition the bricks, so a cell's max is the larger of the still bricks'
        # (the same at every frame) and the moving bricks' at that frame.
        still = cells_of(~moving, slots[~moving])
        out = np.empty((self.frames, *G), dtype=np.float32)
        for fr in range(self.frames):
            best = torch.maximum(still, cells_of(moving, slots[moving] + fr)) if bool(moving.any()) else still
            out[fr] = best.exp().numpy()
        return out


def _pool_to_cells(vox: "torch.Tensor", cells: tuple[int, int, int], G: list[int]) -> "torch.Tensor":
    """Max of a per-voxel grid [>= Nx, >= Ny, >= Nz] over the voxels overlapping each of
    G cells per axis (voxel i spans [-1 + 2 i / N, -1 + 2 (i + 1) / N]; cell g covers
    voxels floor(g N / G) .. ceil((g + 1) N / G) - 1, adaptive max pooling's regions)."""
    import torch

    v = vox[: cells[0], : cells[1], : cells[2]]
    return torch.nn.functional.adaptive_max_pool3d(v[None, None], output_size=tuple(G))[0, 0]


def _axis_overlap(n_cells: int, brick: int, n_bricks: int, n_occ: int) -> "torch.Tensor":
    """[n_bricks, n_occ] float: 1 where brick b's extent overlaps occupancy cell g."""
    import torch

    b = torch.arange(n_bricks, dtype=torch.float64)
    lo = -1.0 + 2.0 * (b * brick) / n_cells
    hi = -1.0 + 2.0 * torch.clamp((b + 1) * brick, max=n_cells) / n_cells
    g = torch.arange(n_occ, dtype=torch.float64)
    glo = -1.0 + 2.0 * g / n_occ
    ghi = -1.0 + 2.0 * (g + 1) / n_occ
    return ((lo[:, None] <= ghi[None, :]) & (hi[:, None] >= glo[None, :])).double()


def occupied_bricks(occupancy, cells: tuple[int, int, int], brick: int) -> np.ndarray:
    """bool [Bx, By, Bz]: bricks that overlap (or touch) an occupied occupancy cell."""
    import torch

    occ = torch.as_tensor(np.asarray(occupancy) > 0, dtype=torch.float64)
    dims = [math.ceil(n / brick) for n in cells]
    mx, my, mz = (_axis_overlap(cells[a], brick, dims[a], occ.shape[a]) for a in range(3))
    # One axis at a time (a single four-operand einsum may build a huge intermediate).
    hit = torch.einsum("ag,ghi->ahi", mx, occ)
    hit = torch.einsum("bh,ahi->abi", my, hit)
    hit = torch.einsum("ci,abi->abc", mz, hit)
    return (hit > 0).numpy()


class _LatticeField:
    """Features of a baked loop on the voxel-corner lattice, by tables per axis pair.

    On the lattice (x_i, y_j, z_l) a feature factors into 2D tables:
    f[i, j, l] = XY[i, j] XZ[i, l] YZ[j, l] * Lx[i] Ly[j] Lz[l] (per channel, scales
    concatenated), with XY etc. the static planes and L* the loop lines at a frame.
    Per frame `frame_tables` folds the lines into two of the tables, so a block of
    corners is three gathers and two products.
    """

    def __init__(self, baked: "BakedLoop", cells: tuple[int, int, int], n_corners: tuple[int, int, int]):
        import torch

        from loopnerf.export.reference_render import _bilinear, _linear

        self.baked = baked
        S = len(baked.scales)
        # Corner coordinates per axis (corners past the last cell clamp to +1).
        self.coords = [(-1.0 + 2.0 * torch.clamp(torch.arange(n_corners[a]), max=cells[a]) / cells[a]).float() for a in range(3)]
        cx, cy, cz = self.coords

        def table(plane_index: int, a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
            aa, bb = torch.meshgrid(a, b, indexing="ij")
            return torch.cat(
                [_bilinear(baked.static_planes[s][plane_index].float(), aa.reshape(-1), bb.reshape(-1)) for s in range(S)], dim=-1
            ).reshape(len(a), len(b), -1)

        self.xy = table(0, cx, cy)  # [Nx+1, Ny+1, K]
        self.xz = table(1, cx, cz)
        self.yz = table(2, cy, cz)
        self._linear = _linear
        region = baked.dynamic_region
        self.has_region = region is not None and not bool(region.all())
        if self.has_region:  # per corner: inside the dynamic region (else the lines read as ones)
            g = torch.stack(torch.meshgrid(cx, cy, cz, indexing="ij"), dim=-1).reshape(-1, 3)
            self.inside = baked.in_dynamic_region(g).reshape(len(cx), len(cy), len(cz))

    def frame_tables(self, frame: int) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(XY * Lx * Ly [Nx+1, Ny+1, K], XZ * Lz [Nx+1, Nz+1, K]) at loop frame `frame`."""
        return self._fold(lambda plane: plane[frame])

    def mean_tables(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        """`frame_tables` with each loop line averaged over the loop's frames."""
        return self._fold(lambda plane: plane.mean(0))

    def _fold(self, line_of) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The tables with the loop lines line_of(loop plane [F, R, C] float32) -> [R, C] folded in."""
        import torch

        b = self.baked
        S = len(b.scales)
        lx, ly, lz = (torch.cat([self._linear(line_of(b.loop_planes[s][a].float()), self.coords[a]) for s in range(S)], dim=-1)
                      for a in range(3))
        return self.xy * lx[:, None, :] * ly[None, :, :], self.xz * lz[None, :, :]

    def inside_block(self, ii: "torch.Tensor", jj: "torch.Tensor", ll: "torch.Tensor") -> "torch.Tensor":
        """bool [n, B+1, B+1, B+1]: which corners of n bricks (corner indices ii, jj, ll
        [n, B+1]) are in the loop's dynamic region (needs `has_region`)."""
        return self.inside[ii[:, :, None, None], jj[:, None, :, None], ll[:, None, None, :]]

    def block(self, tables, ii: "torch.Tensor", jj: "torch.Tensor", ll: "torch.Tensor") -> "torch.Tensor":
        """Features [n, B+1, B+1, B+1, K] of n bricks with corner indices ii, jj, ll [n, B+1]
        (outside the loop's dynamic region: the static planes alone)."""
        import torch

        if not self.has_region:
            return self._product(tables, ii, jj, ll)
        # Most bricks lie wholly inside the dynamic region or wholly outside it: each is
        # built from its own tables, and only the bricks that straddle the border are
        # built both ways (products of [n, V, K] are what the build spends its time on).
        inside = self.inside_block(ii, jj, ll)
        per_brick = inside.flatten(1)
        all_in, any_in = per_brick.all(1), per_brick.any(1)
        if bool(all_in.all()):
            return self._product(tables, ii, jj, ll)
        still_tables = (self.xy, self.xz)
        if not bool(any_in.any()):
            return self._product(still_tables, ii, jj, ll)
        out = torch.empty((len(ii), ii.shape[1], jj.shape[1], ll.shape[1], self.yz.shape[-1]), dtype=self.yz.dtype)
        for sel, tabs in ((all_in, tables), (~any_in, still_tables)):
            if bool(sel.any()):
                out[sel] = self._product(tabs, ii[sel], jj[sel], ll[sel])
        mixed = any_in & ~all_in
        if bool(mixed.any()):
            m = (ii[mixed], jj[mixed], ll[mixed])
            out[mixed] = torch.where(inside[mixed][..., None], self._product(tables, *m), self._product(still_tables, *m))
        return out

    def _product(self, tables, ii: "torch.Tensor", jj: "torch.Tensor", ll: "torch.Tensor") -> "torch.Tensor":
        """t1[i, j] t2[i, l] YZ[j, l] [n, B+1, B+1, B+1, K] for tables (t1, t2)."""
        t1, t2 = tables
        a = t1[ii[:, :, None], jj[:, None, :]]  # [n, b, b, K] over (i, j)
        c = t2[ii[:, :, None], ll[:, None, :]]  # over (i, l)
        d = self.yz[jj[:, :, None], ll[:, None, :]]  # over (j, l)
        f = a[:, :, :, None, :] * c[:, :, None, :, :]
        return f.mul_(d[:, None, :, :, :])


def colour_code(dir_table: "torch.Tensor", features: "torch.Tensor", weights: "torch.Tensor", rank: int):
    """The rank-k colour code of `BrickGrid`: (encode [K, k], mean [K], table [Hd, Wd, 3, k+1], kept).

    dir_table [Hd, Wd, 3, K]: colour basis B(d) per lat-long direction (rows weighted
    by sin(theta), the solid angle they cover). features [M, K], weights [M] >= 0:
    samples of the features the code must serve. z = (f - mean) @ encode; colour
    logits = table[..., :k] @ z + table[..., k]. kept: fraction of the colour-logit
    energy the code keeps over those samples and all directions (1 = exact).
    """
    import torch

    Hd, Wd, _, K = dir_table.shape
    k = int(min(rank, K))
    f = features.double()
    w = weights.double().clamp(min=0)
    w = w / w.sum().clamp(min=1e-30)
    mean = (w[:, None] * f).sum(0)
    centred = f - mean
    cov = (centred * w[:, None]).T @ centred
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp(min=float(evals.max()) * 1e-9 + 1e-20)
    sqrt_cov = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    inv_sqrt = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    theta = (torch.arange(Hd, dtype=torch.float64) / max(Hd - 1, 1)) * math.pi
    row_w = torch.sin(theta).clamp(min=1e-3).sqrt()[:, None, None, None].expand(Hd, Wd, 3, 1)
    Y = (dir_table.double() * row_w).reshape(-1, K)
    _, sv, vh = torch.linalg.svd(Y @ sqrt_cov, full_matrices=False)
    vk = vh[:k].T  # [K, k]
    kept = float((sv[:k] ** 2).sum() / (sv**2).sum().clamp(min=1e-30))
    encode = inv_sqrt @ vk  # z = (f - m) @ encode
    decode = sqrt_cov @ vk  # f - m ~= decode @ z
    table = torch.cat([dir_table.double() @ decode, (dir_table.double() @ mean)[..., None]], dim=-1)
    return encode.float(), mean.float(), table.float().contiguous(), kept


def code_quantisation(codes: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """(lo [k], step [k]) of the 8-bit code of `BrickGrid.colour`: z = lo + step * q,
    q in 0..255, uniform over the range of `codes` [M, k] (samples of the code) widened
    by a quarter of it on each side."""
    import torch

    if len(codes) == 0:
        codes = torch.zeros(1, codes.shape[1])
    lo = codes.amin(0).float()
    hi = codes.amax(0).float()
    spare = 0.25 * (hi - lo) + 1e-3
    lo = lo - spare
    return lo, (hi + spare - lo) / 255.0


def quantised_table(table: "torch.Tensor", lo: "torch.Tensor", step: "torch.Tensor") -> "torch.Tensor":
    """The colour table [Hd, Wd, 3, k+1] of `colour_code` for codes stored as q with
    z = lo + step * q: G(d) z + g(d) = (G(d) step) q + (g(d) + G(d) lo)."""
    import torch

    G, g = table[..., :-1].double(), table[..., -1].double()
    return torch.cat([G * step.double(), (g + G @ lo.double())[..., None]], dim=-1).float().contiguous()


class BrickBudgetError(RuntimeError):
    """The brick grid of a loop would need more memory than allowed (a loop whose
    haze fills the box, or whose every brick moves); the renderer then marches the
    planes instead."""


def build_bricks(
    baked: "BakedLoop",
    *,
    brick: int = BRICK_CELLS,
    rank: int = COLOUR_RANK,
    dynamic_log_density: float = DYNAMIC_LOG_DENSITY,
    dynamic_colour_logit: float = DYNAMIC_COLOUR_LOGIT,
    max_megabytes: float | None | Literal["default"] = "default",
    progress: Callable[[int, int], None] | None = None,
) -> BrickGrid:
    """Resample a baked loop into a `BrickGrid` (see the module docstring).

    Args:
        baked: the loop (its occupancy decides which bricks exist).
        brick: B, cells per brick edge; rank: k, colour coordinates per corner.
        dynamic_log_density, dynamic_colour_logit: a brick moves when a corner's log
            density (where alpha over one cell > ALPHA_FLOOR) or colour logits change by
            more than these over the loop (then it is stored per frame); else it stores
            the loop-mean state once.
        max_megabytes: raise `BrickBudgetError` (before the expensive part) when the grid
            would need more; None for no limit; "default": `MAX_MEGABYTES` (read at the call).
        progress: called as progress(done, total) over the brick chunks (two passes).
    """
    import torch

    t0 = time.perf_counter()
    if max_megabytes == "default":
        max_megabytes = MAX_MEGABYTES
    F = int(baked.frames)
    finest = [int(r) * max(baked.scales) for r in baked.resolution]
    cells = tuple(max(1, r - 1) for r in finest)
    dims = tuple(math.ceil(n / brick) for n in cells)
    n_corners = tuple(d * brick + 1 for d in dims)
    occupied = occupied_bricks(baked.occupancy, cells, brick)
    where = np.argwhere(occupied)
    n_bricks = len(where)
    V = (brick + 1) ** 3
    K = baked.feature_dim
    k = int(min(rank, K))
    bytes_per_slot = V * (2 + k)  # float16 log density, uint8 code
    if max_megabytes is not None and n_bricks * bytes_per_slot / 1e6 > max_megabytes:
        raise BrickBudgetError(
            f"{n_bricks} occupied bricks ({n_bricks / max(1, int(np.prod(dims))):.0%} of the grid) need "
            f"{n_bricks * bytes_per_slot / 1e6:.0f} MB even if none moved (budget {max_megabytes:.0f} MB)")
    lattice = _LatticeField(baked, cells, n_corners)
    w_sigma = baked.sigma_weight.float()
    bias = float(baked.sigma_bias.float()[0]) - 1.0
    cell_len = min((baked.box[1][a] - baked.box[0][a]) / cells[a] for a in range(3))
    log_floor = math.log(ALPHA_FLOOR / cell_len)  # log density under which alpha over a cell < ALPHA_FLOOR
    offs = torch.arange(brick + 1)
    dir_table = baked.dir_table.float()

    def corner_index(sel: np.ndarray) -> tuple["torch.Tensor", ...]:
        b = torch.as_tensor(sel, dtype=torch.long)
        return tuple(b[:, a, None] * brick + offs[None, :] for a in range(3))

    # 1. The colour code from the visible corners of a sample of bricks at a few frames.
    rng = np.random.default_rng(0)
    sample = where[rng.permutation(n_bricks)[: min(n_bricks, 256)]] if n_bricks else where
    feats, wts = [], []
    for frame in sorted({0, F // 3, (2 * F) // 3}):
        tables = lattice.frame_tables(frame)
        for c0 in range(0, len(sample), CHUNK_BRICKS):
            f = lattice.block(tables, *corner_index(sample[c0 : c0 + CHUNK_BRICKS])).reshape(-1, K)
            alpha = 1.0 - torch.exp(-torch.exp(f @ w_sigma + bias) * cell_len)
            keep = alpha > ALPHA_FLOOR
            feats.append(f[keep])
            wts.append(alpha[keep])
    if feats and sum(len(x) for x in feats) >= K:
        features, weights = torch.cat(feats), torch.cat(wts)
    else:  # nothing visible (an empty loop): any code works
        features, weights = torch.zeros(K + 1, K), torch.ones(K + 1)
    encode, mean, table, kept = colour_code(dir_table, features, weights, k)
    # The code is stored in 8 bits, uniform over the sample's range with a quarter of it
    # to spare on each side (what lies beyond saturates); the steps fold into the table.
    z_lo, z_step = code_quantisation((features - mean) @ encode)
    stored_table = quantised_table(table, z_lo, z_step)
    # Colour-logit change bound per unit change of z: the largest row norm of G(d).
    g_norm = float(table[..., :k].norm(dim=-1).max())
    project = torch.cat([w_sigma[:, None], encode], dim=1)  # [K, 1 + k]: features -> (log density, code)
    offset = torch.cat([torch.tensor([bias]), -(mean @ encode)])  # [1 + k]

    def encoded(tables, idx) -> "torch.Tensor":
        """(log density, code) [n, V', 1 + k] of bricks with corner indices idx."""
        f = lattice.block(tables, *idx)  # [n, B+1, B+1, B+1, K]
        return (f @ project + offset).reshape(f.shape[0], -1, project.shape[1])

    frame_tables = [lattice.frame_tables(fr) for fr in range(F)]
    chunks = list(range(0, n_bricks, CHUNK_BRICKS))
    probe = torch.arange(0, brick + 1, 2)

    def moving_probes(sel: np.ndarray) -> np.ndarray:
        """bool [n]: which of the bricks `sel` move, from every frame at every other
        corner (spacing 2 cells)."""
        pidx = tuple(i[:, probe] for i in corner_index(sel))
        traj = torch.stack([encoded(frame_tables[fr], pidx) for fr in range(F)])  # [F, n, Vp, 1 + k]
        dev = traj - traj.mean(0)
        matters = traj[..., 0].amax(0) > log_floor  # [n, Vp]
        d_dev = (dev[..., 0].abs().amax(0) * matters).amax(-1)
        c_dev = (dev[..., 1:].norm(dim=-1).amax(0) * matters).amax(-1) * g_norm
        return ((d_dev > dynamic_log_density) | (c_dev > dynamic_colour_logit)).numpy()

    # 2. Which bricks move. First a random sample, so a grid far over budget stops here.
    if max_megabytes is not None and n_bricks > CHUNK_BRICKS:
        moving = moving_probes(sample[:CHUNK_BRICKS])
        estimate = n_bricks * (1 + float(moving.mean()) * (F - 1)) * bytes_per_slot / 1e6
        if estimate > 1.25 * max_megabytes:
            raise BrickBudgetError(
                f"{n_bricks} occupied bricks, about {moving.mean():.0%} of them moving, need about {estimate:.0f} MB "
                f"(budget {max_megabytes:.0f} MB)")
    # A brick with no corner in the loop's dynamic region is the static scene at every
    # frame (it cannot move): only the others are probed.
    can_move = np.ones(n_bricks, dtype=bool)
    if lattice.has_region and n_bricks:
        can_move = lattice.inside_block(*corner_index(where)).flatten(1).any(1).numpy()
    is_dyn = np.zeros(n_bricks, dtype=bool)
    for ci, c0 in enumerate(chunks):
        sel = where[c0 : c0 + CHUNK_BRICKS]
        probe_these = can_move[c0 : c0 + len(sel)]
        if probe_these.any():
            is_dyn[c0 : c0 + len(sel)][probe_these] = moving_probes(sel[probe_these])
        if progress is not None:
            progress(ci + 1, 2 * len(chunks))
    n_dynamic = int(is_dyn.sum())
    n_slots = n_bricks + n_dynamic * (F - 1)
    if max_megabytes is not None and n_slots * bytes_per_slot / 1e6 > max_megabytes:
        raise BrickBudgetError(
            f"{n_bricks} occupied bricks of which {n_dynamic} move need {n_slots * bytes_per_slot / 1e6:.0f} MB "
            f"(budget {max_megabytes:.0f} MB)")
    # 3. The slots: a still brick its loop-mean state, a moving one its F frames.
    slot = np.full(dims, -1, dtype=np.int32)
    dynamic = np.zeros(dims, dtype=np.int32)
    # Written in place as built (no list of pieces to concatenate: the grid's peak
    # memory is the grid itself); one slot of empty space when there is none.
    log_density = torch.full((max(1, n_slots), V), -80.0, dtype=torch.float16)
    colour = torch.zeros((max(1, n_slots), V, k), dtype=torch.uint8)

    def stored_code(z: "torch.Tensor") -> "torch.Tensor":
        return ((z - z_lo) / z_step).round_().clamp_(0, 255).to(torch.uint8)

    mean_tables = lattice.mean_tables()  # the loop-mean state of the bricks that stand still
    next_slot = 0
    for ci, c0 in enumerate(chunks):
        sel = where[c0 : c0 + CHUNK_BRICKS]
        idx = corner_index(sel)
        dyn = is_dyn[c0 : c0 + len(sel)]
        sizes = np.where(dyn, F, 1)
        starts = next_slot + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        slot[tuple(sel.T)] = starts
        dynamic[tuple(sel.T)] = dyn.astype(np.int32)
        next_slot += int(sizes.sum())
        # Loop-mean lines for the bricks that stand still (their frames agree within the
        # tolerances), every frame for the moving ones.
        if (~dyn).any():
            keep = np.nonzero(~dyn)[0]
            state = encoded(mean_tables, tuple(i[torch.as_tensor(keep)] for i in idx))
            at = torch.as_tensor(starts[keep], dtype=torch.long)
            log_density[at] = state[..., 0].half()
            colour[at] = stored_code(state[..., 1:])
        if dyn.any():
            keep = np.nonzero(dyn)[0]
            mov = tuple(i[torch.as_tensor(keep)] for i in idx)
            at = torch.as_tensor(starts[keep], dtype=torch.long)
            for fr in range(F):
                state = encoded(frame_tables[fr], mov)
                log_density[at + fr] = state[..., 0].half()
                colour[at + fr] = stored_code(state[..., 1:])
        if progress is not None:
            progress(len(chunks) + ci + 1, 2 * len(chunks))
    grid = BrickGrid(
        cells=cells, brick=int(brick), rank=int(k), frames=F, slot=slot, dynamic=dynamic,
        log_density=log_density.reshape(-1).numpy(),
        colour=colour.reshape(-1).numpy(),
        colour_table=np.ascontiguousarray(stored_table.numpy(), dtype=np.float32),
    )
    grid.stats = {
        "seconds": round(time.perf_counter() - t0, 3),
        "bricks": int(n_bricks),
        "dynamic_bricks": int(n_dynamic),
        "brick_grid": list(dims),
        "slots": int(next_slot),
        "colour_energy_kept": round(kept, 5),
        "megabytes": round(grid_megabytes(grid), 1),
    }
    return grid
