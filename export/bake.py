"""Bake a loop model's planes and decoder into a `BakedLoop` (then `save_loop` it).

What baking does beyond copying the planes:
- fp16 planes (half the size; the fidelity test checks the render stays >= 40 dB);
- an occupancy grid: the maximum density over the loop, which holds the still
  part of the scene in every frame (every loop frame and the half-way phases between frames, because a product of
  linearly blended planes can peak between samples), evaluated at several points per
  cell and dilated by one cell, so thin parts are not lost and a renderer can skip
  empty space without changing the image;
- the view-direction basis of the `linear` decoder tabulated on a lat-long grid of
  unit directions, so a renderer needs no MLP per ray.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

from loopnerf.export.loop_format import BakedLoop, LoopFormatError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# The bake's defaults, for every caller (`loopnerf bake`, Python, the exporters' tests).
DEFAULT_OCCUPANCY_RESOLUTION = 64
"""Occupancy grid cells per axis over the scene box."""
DEFAULT_DENSITY_THRESHOLD = 0.05
"""A cell is occupied when some point of it exceeds this density (per world unit) at
some loop phase. The viewer spends one sample per large faint cell (per-cell density
bounds), so a low threshold costs little: on the demo loop 0.05 (90 % of the box)
renders within 2 % of the speed of 0.5 (75 %) and 0.6 dB closer to the loop model."""
DEFAULT_STEP_CELLS = 1.0
"""The viewer's marching step in dense cells, in cells of the finest plane. On the demo
loop, against the loop model's exact integral (1024 samples) over three views: 2 cells
38.3-44.9 dB (a thin surface is stepped over at the edge of one view), 1 cell
41.6-45.9 dB with 14 % more samples, 0.5 cell 43.5-46.4 dB with 30 % more."""
DEFAULT_DIRECTION_TABLE = (32, 64)
"""(rows, columns) of the lat-long table of the colour basis over directions."""


def direction_grid(height: int, width: int) -> "torch.Tensor":
    """Unit directions [Hd, Wd, 3] at the cells of the lat-long direction table:
    row r has theta = r / (Hd - 1) * pi (angle from +y), column c has
    phi = c / Wd * 2 pi - pi, d = (sin theta cos phi, cos theta, sin theta sin phi)."""
    import torch

    theta = torch.arange(height, dtype=torch.float64) / (height - 1) * math.pi
    phi = torch.arange(width, dtype=torch.float64) / width * 2 * math.pi - math.pi
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    d = torch.stack([torch.sin(th) * torch.cos(ph), torch.cos(th), torch.sin(th) * torch.sin(ph)], dim=-1)
    return d.float()


def bake_direction_table(direction_basis: Callable, size: tuple[int, int], feature_dim: int) -> "torch.Tensor":
    """Evaluate `direction_basis(dirs [M, 3]) -> [M, 3, C*S]` on the lat-long grid ->
    table [Hd, Wd, 3, C*S] float32."""
    import torch

    Hd, Wd = int(size[0]), int(size[1])
    if Hd < 2 or Wd < 1:
        raise LoopFormatError(f"direction_table must be at least (2, 1), got {size}")
    dirs = direction_grid(Hd, Wd).reshape(-1, 3)
    with torch.no_grad():
        basis = direction_basis(dirs)
    basis = torch.as_tensor(basis).detach().float().cpu()
    if tuple(basis.shape) != (Hd * Wd, 3, feature_dim):
        raise LoopFormatError(
            f"direction_basis returned shape {list(basis.shape)}, expected [{Hd * Wd}, 3, {feature_dim}]"
        )
    return basis.reshape(Hd, Wd, 3, feature_dim).contiguous()


def _infer_scales(static_planes: Sequence[Sequence["torch.Tensor"]]) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """Scale multipliers and base resolution from the planes' shapes (scale 0 = x1)."""
    res = []
    for s, (xy, xz, _) in enumerate(static_planes):
        res.append((int(xy.shape[1]), int(xy.shape[0]), int(xz.shape[0])))
    base = res[0]
    scales = []
    for s, r in enumerate(res):
        m = r[0] // base[0]
        if tuple(b * m for b in base) != r:
            raise LoopFormatError(
                f"scale {s} planes have resolution {r}, not an integer multiple of scale 0's {base}"
            )
        scales.append(m)
    return tuple(scales), base


def compute_density_max(
    baked: BakedLoop,
    resolution: tuple[int, int, int],
    *,
    samples_per_axis: int = 2,
    include_static: bool = False,
    chunk: int = 1 << 22,
    progress: bool = False,
) -> "torch.Tensor":
    """Density bound per cell [Gx, Gy, Gz] float32 (1/world unit) of a BakedLoop.

    The maximum density over each cell's samples_per_axis^3 stratified points and the
    loop phases k / (2F), k = 0..2F-1 (every frame and the half-way phases), then the
    maximum over the 3x3x3 neighbourhood: a sampled maximum can miss a peak between
    points, and the neighbours' samples cover it. The renderer uses it to size its
    steps (a faint cell takes one sample, a dense one many); thresholded it gives
    the occupancy (`compute_occupancy`). `include_static=True` also adds the static
    planes with the loop planes at 1 (the stage-1 initial state); off by default,
    because no loop phase renders that combination and it can mark whole slabs (a
    static plane's profile extended along the missing axis).

    Why it is fast: the stratified points form a regular (Gx k) x (Gy k) x (Gz k)
    lattice, so the static products (times sigma_weight) are computed once per x-slab
    of the lattice, and a phase only adds the outer product of three small line
    tables: logit[x, y, z] = sum_c P[x, y, z, c] Lx[x, c] Ly[y, c] Lz[z, c].
    `chunk` bounds the lattice points x features held at once.
    """
    import torch

    from loopnerf.export.lattice import lattice_logits

    k = samples_per_axis
    Gx, Gy, Gz = (int(g) for g in resolution)
    # Lattice coordinates per axis: (cell + (j + 0.5) / k) / G * 2 - 1 = (i + 0.5) / (G k) * 2 - 1.
    ax, ay, az = ((torch.arange(g * k, dtype=torch.float32) + 0.5) / (g * k) * 2.0 - 1.0 for g in (Gx, Gy, Gz))
    F = baked.frames
    phases = [i / (2 * F) for i in range(2 * F)]
    logits = lattice_logits(
        baked, ax, ay, az, phases, reduce_max=True, include_static=include_static, slab_multiple=k, chunk=chunk,
        progress="density bounds" if progress else None,
    )
    max_logit = logits.reshape(Gx, k, Gy, k, Gz, k).amax(dim=(1, 3, 5))
    max_logit = torch.nn.functional.max_pool3d(max_logit[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
    b = float(baked.sigma_bias.float()[0])
    # density = exp(logit + b - 1) (trunc_exp's forward), clamped to float16's range
    return torch.exp((max_logit + b - 1.0).clamp(max=11.0))


def compute_occupancy(
    baked: BakedLoop,
    resolution: tuple[int, int, int],
    threshold: float,
    *,
    density_max: "torch.Tensor | None" = None,
    **kwargs: Any,
) -> "torch.Tensor":
    """Occupancy [Gx, Gy, Gz] uint8 of a BakedLoop (fp16 or fp32 planes): 1 where the
    cell's density bound (`compute_density_max`, computed unless given; `kwargs` go
    to it) exceeds `threshold` (1/world unit). The bound already holds the 3x3x3
    neighbourhood maximum, so the occupied region is dilated by one cell."""
    import torch

    if density_max is None:
        density_max = compute_density_max(baked, resolution, **kwargs)
    return (density_max > float(threshold)).to(torch.uint8)


def _camera_dict(camera: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from loopnerf.data.capture import Intrinsics
    from loopnerf.errors import CaptureError

    if "c2w" not in camera:
        raise LoopFormatError("camera is missing ['c2w']")
    try:
        k = Intrinsics.from_dict(camera, "camera")
    except CaptureError as err:
        raise LoopFormatError(str(err)) from None
    return {"c2w": np.asarray(camera["c2w"], dtype=np.float64).reshape(4, 4).tolist(), **k.to_dict()}


def bake_loop(
    static_planes: Sequence[Sequence["torch.Tensor"]],
    loop_planes: Sequence[Sequence["torch.Tensor"]],
    sigma_weight: "torch.Tensor",
    sigma_bias: "torch.Tensor",
    direction_basis: Callable[["torch.Tensor"], "torch.Tensor"],
    box: Any,
    frames: int,
    fps: float,
    camera: dict[str, Any],
    up: Sequence[float],
    background: Sequence[float],
    near: float,
    far: float,
    *,
    occupancy_resolution: int | Sequence[int] = DEFAULT_OCCUPANCY_RESOLUTION,
    direction_table: tuple[int, int] = DEFAULT_DIRECTION_TABLE,
    density_threshold: float = DEFAULT_DENSITY_THRESHOLD,
    step: float | None = None,
    step_cells: float = DEFAULT_STEP_CELLS,
    scales: Sequence[int] | None = None,
    dynamic_region: "torch.Tensor | None" = None,
    contraction: str = "none",
    sky: "torch.Tensor | None" = None,
    progress: bool = False,
) -> BakedLoop:
    """Bake a loop model into a `BakedLoop` (`linear` decoder; format version 1, or 2
    for an unbounded scene).

    Args:
        static_planes: per scale [xy [Ry_s, Rx_s, C], xz [Rz_s, Rx_s, C], yz [Rz_s, Ry_s, C]],
            float32 channel-last (the loop model's frozen space planes).
        loop_planes: per scale [xt [F, Rx_s, C], yt [F, Ry_s, C], zt [F, Rz_s, C]].
        sigma_weight: [C * S]; sigma_bias: [1] or scalar: density = exp(f @ w + b - 1).
        direction_basis: unit world directions [M, 3] -> colour basis [M, 3, C * S]
            (the linear decoder's basis MLP); tabulated on a lat-long grid.
        box: [2, 3] world scene box (min, max corners).
        frames: F, loop length (must match the loop planes); fps: playback rate.
        camera: default camera {"c2w" 4x4 camera-to-world (OpenGL), "fx", "fy", "cx",
            "cy" (pixels), "width", "height"}.
        up: world up vector; background: RGB in [0, 1]; near, far: ray range (world units).
        occupancy_resolution: occupancy grid cells per axis (int or (Gx, Gy, Gz)).
        direction_table: (Hd, Wd) of the lat-long direction table.
        density_threshold: occupancy cut, density per world unit.
        step: suggested marching step (world units); default `step_cells` finest plane
            cells along the box's shortest cell size (the box spans half the planes when
            contracted, so a cell there is twice as long).
        step_cells: the default step in finest-plane cells (see DEFAULT_STEP_CELLS).
        scales: plane multipliers; default inferred from the plane shapes.
        dynamic_region: [D, D, D] 0/1 where the loop planes act (stage 1's
            `DynamicRegion.grid`); None or all ones = everywhere.
        contraction: "none" (the planes span the box) or "mipnerf360" (unbounded: they
            span the contracted cube, the box its middle half; see `loop_format`).
        sky: unbounded scenes: RGB [Hs, Ws, 3] in [0, 1] at infinity per direction (the
            lat-long map of the direction table), shown behind the field; None: `background`.
    """
    import torch

    S = len(static_planes)
    if S == 0 or len(loop_planes) != S:
        raise LoopFormatError(f"need the same non-zero number of scales of static and loop planes, got {S} and {len(loop_planes)}")
    inferred, base = _infer_scales(static_planes)
    if scales is None:
        scales = inferred
    else:
        scales = tuple(int(m) for m in scales)
        base = tuple(int(r) // scales[0] for r in base)  # type: ignore[assignment]
    C = int(static_planes[0][0].shape[-1])
    F = int(loop_planes[0][0].shape[0])
    if F != int(frames):
        raise LoopFormatError(f"frames={frames} but the loop planes have {F} time samples")
    for s in range(S):
        for p in list(static_planes[s]) + list(loop_planes[s]):
            if not bool(torch.isfinite(p).all()):
                raise LoopFormatError(f"scale {s}: a plane holds non-finite values; cannot bake")
            if float(p.detach().abs().max()) > 65000.0:
                raise LoopFormatError(f"scale {s}: a plane value exceeds the float16 range; cannot bake")
    if isinstance(occupancy_resolution, int):
        occupancy_resolution = (occupancy_resolution,) * 3
    occ_res = tuple(int(g) for g in occupancy_resolution)
    box_t = torch.as_tensor(box, dtype=torch.float64).reshape(2, 3)
    if step is None:
        finest = [r * max(scales) for r in base]
        step = float(step_cells) * float(min((box_t[1, i] - box_t[0, i]) / finest[i] for i in range(3)))
        if contraction == "mipnerf360":
            step *= 2.0
    half = lambda t: t.detach().float().cpu().half().contiguous()  # noqa: E731
    table = bake_direction_table(direction_basis, direction_table, C * S)
    baked = BakedLoop(
        box=(tuple(float(v) for v in box_t[0]), tuple(float(v) for v in box_t[1])),  # type: ignore[arg-type]
        frames=F,
        fps=float(fps),
        scales=tuple(scales),
        features=C,
        resolution=tuple(int(r) for r in base),  # type: ignore[arg-type]
        occupancy_resolution=occ_res,  # type: ignore[arg-type]
        density_threshold=float(density_threshold),
        camera=_camera_dict(camera),
        up=tuple(float(u) for u in up),  # type: ignore[arg-type]
        background=tuple(float(c) for c in background),  # type: ignore[arg-type]
        near=float(near),
        far=float(far),
        step=float(step),
        contraction=str(contraction),
        sky=None if sky is None else torch.as_tensor(sky).detach().float().cpu().clamp(0, 1).half().contiguous(),
        static_planes=[[half(p) for p in static_planes[s]] for s in range(S)],
        loop_planes=[[half(p) for p in loop_planes[s]] for s in range(S)],
        sigma_weight=torch.as_tensor(sigma_weight).detach().float().cpu().reshape(-1).contiguous(),
        sigma_bias=torch.as_tensor(sigma_bias).detach().float().cpu().reshape(1).contiguous(),
        dir_table=table,
        occupancy=torch.zeros(occ_res, dtype=torch.uint8),
        dynamic_region=None if dynamic_region is None or bool(torch.as_tensor(dynamic_region).all())
        else (torch.as_tensor(dynamic_region) != 0).to(torch.uint8).cpu().contiguous(),
    )
    # Bounds and occupancy from the fp16 planes: exactly what a renderer of the file will see.
    bound = compute_density_max(baked, occ_res, progress=progress)
    baked.occupancy = compute_occupancy(baked, occ_res, float(density_threshold), density_max=bound)
    baked.density_max = bound.half().contiguous()
    # Run the reader's checks now, so a bad bake fails here and not in the viewer.
    from loopnerf.export.loop_format import _validate

    _validate(baked.header(), baked.tensors(), "<baked loop>")
    return baked


def bake_loop_model(model, camera: dict, fps: float, *, progress: bool = False, **options) -> BakedLoop:
    """A `BakedLoop` of a distilled `LoopModel` (`loopnerf.distill.loop_model`) whose field
    uses the linear decoder: its frozen space planes, its loop planes, the decoder's
    density weights and colour basis. `camera` as in `bake_loop`; `options` are
    `bake_loop`'s (occupancy_resolution, density_threshold, step_cells, ...)."""
    import numpy as np
    import torch

    from loopnerf.errors import ConfigError

    field = model.field
    decoder = field.base.decoder
    if getattr(decoder, "kind", None) != "linear":
        raise ConfigError("the .loop format bakes the 'linear' decoder only; train stage 1 with --decoder linear")
    static = [[p.detach() for p in planes] for planes in field.base.grid.static_planes_by_scale()]
    loops = [[p.detach() for p in planes] for planes in field.loop_planes_by_scale()]

    @torch.no_grad()
    def basis(dirs: "torch.Tensor") -> "torch.Tensor":
        return decoder.direction_basis(dirs.float())

    box = model.box
    cam = np.asarray(camera["c2w"], dtype=np.float64)
    corners = np.array([[box[i][0], box[j][1], box[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    far = float(np.linalg.norm(corners - cam[:3, 3], axis=1).max()) * 1.5
    if model.cfg.contraction != "none":
        far = float(model.cfg.far)  # unbounded: as far as stage 1 looked
    return bake_loop(
        static, loops,
        decoder.sigma.weight.detach().reshape(-1), decoder.sigma.bias.detach().reshape(1),
        basis, box, model.frames, fps, camera, (0.0, 1.0, 0.0), model.cfg.background,
        float(model.cfg.near), far, dynamic_region=model.dynamic_region.grid,
        contraction=model.cfg.contraction, progress=progress,
        sky=None if getattr(model, "sky", None) is None else torch.sigmoid(model.sky.detach()), **options,
    )
