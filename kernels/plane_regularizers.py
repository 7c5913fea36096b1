"""The k-Planes plane regularizers in one Taichi pass per plane: value and gradient.

`plane_regularizer_grads(plane, grad, tv_w=, tv_h=, smooth=, l1=, circular=, anchor=)`
adds to `grad` the gradient of

    tv_w * mean(dW^2) + tv_h * mean(dH^2) + smooth * mean(s^2) + l1 * mean(|anchor - plane|)

with respect to `plane` [H, W, C] (channel-last; on a space-time plane H is the time
axis) and returns that value (a 0-d tensor). dW / dH are first differences along W / H,
s the second difference along H centred on each row (rows 1..H-2; with `circular=True`
every row, the H axis wrapping around like a loop's time axis), `anchor` a row [W, C]
broadcast over H (None: ones, the static state of a time plane). The plain-PyTorch twin
is `loopnerf.model.losses` (`plane_tv`, `time_smoothness`, `l1_time_planes`) under
autograd; the tests compare the two in float64.

`regularizer_grads_of_planes(planes, grads, ...)` does the same for a list of planes
(one weight set, each term a mean over its own plane), three planes a launch: a Taichi
launch costs about 0.2 ms on this CPU, as much as a small plane's whole pass (a
`cpu`-preset step's 30 planes: 20.5 vs 30.0 ms one by one, same process, cold caches).

Why a kernel: under autograd these means cost about 20 passes over every plane per
step (differences, squares, means, and the slice backwards, which allocate and zero
plane-sized tensors), 42 ms of a 142 ms `cpu`-preset step. Here each element reads its
neighbours once and writes its gradient once, straight into the plane's `.grad`: no
plane-sized temporary at all. Rows run in parallel, a few consecutive rows a task, each
streaming along its row and reading rows h-2..h+2 that the task has just read (the
earlier column sweeps crossed a 4 KB page at every row, where the hardware prefetcher
stops: 23.4 vs 16.9 ms for a `cpu` step's 30 planes, interleaved in one process); each
row keeps its own partial loss (no float atomics, which are compare-and-swap loops on
the CPU), its squared terms summed per channel and reduced once a row.
"""

from typing import Optional, Sequence

import torch

from . import runtime

_KERNELS: dict = {}

ROWS_PER_TASK = 8
"""Plane rows per CPU task (a 48-row plane: 6 tasks for 2 threads; needs
`runtime.fixed_cpu_block_dim`, else Taichi makes one task of a plane under 512 rows)."""
GROUP = 3
"""Planes per launch (`regularizer_grads_of_planes`): a grid's three space or three
space-time planes of one scale."""
_ONES: dict = {}


def _build(real_name: str, channels: int, circular: bool):
    ti = runtime._taichi()
    real = ti.f64 if real_name == "float64" else ti.f32
    vec = ti.types.vector(channels, real)
    plane_t = ti.types.ndarray(dtype=vec, ndim=2)
    row_t = ti.types.ndarray(dtype=vec, ndim=1)
    sums_t = ti.types.ndarray(dtype=real, ndim=1)

    coef_t = ti.types.ndarray(dtype=real, ndim=2)  # [GROUP, 4]: cw, ch, cs, cl of each plane

    @ti.func
    def row_pass(p: ti.template(), g: ti.template(), anchor: ti.template(), h, cw, ch, cs, cl):
        """Row h of plane p: add its terms' gradient into g, return their value. Every
        load streams along the row (rows h-2..h+2, all recently read by this task), the
        plane's borders are clamped indices and 0/1 masks, not branches, and the squared
        terms are summed per channel and reduced once a row."""
        H, W = p.shape[0], p.shape[1]
        hm1, hp1, hm2, hp2 = 0, 0, 0, 0
        m0, mm, mp = ti.cast(1.0, real), ti.cast(1.0, real), ti.cast(1.0, real)
        if ti.static(circular):
            hm1, hp1, hm2, hp2 = (h + H - 1) % H, (h + 1) % H, (h + 2 * H - 2) % H, (h + 2) % H
        else:
            hm1, hp1, hm2, hp2 = ti.max(h - 1, 0), ti.min(h + 1, H - 1), ti.max(h - 2, 0), ti.min(h + 2, H - 1)
            # the centred second difference s_c exists for rows 1..H-2 only
            m0 = ti.cast(h >= 1 and h <= H - 2, real)
            mm = ti.cast(h >= 2 and h <= H - 1, real)
            mp = ti.cast(h >= 0 and h <= H - 3, real)
        m_down = ti.cast(h + 1 < H, real)  # first differences along H never wrap
        m_up = ti.cast(h > 0, real)
        acc = ti.cast(0.0, real)
        acc_c = ti.Vector.zero(real, channels)
        for w in range(W):
            p0 = p[h, w]
            d_r = p[h, ti.min(w + 1, W - 1)] - p0  # 0 at the last column
            d_l = p0 - p[h, ti.max(w - 1, 0)]  # 0 at the first
            below = p[hp1, w]
            above = p[hm1, w]
            d_d = (below - p0) * m_down
            d_u = (p0 - above) * m_up
            acc_c = acc_c + cw * d_r * d_r + ch * d_d * d_d
            grad = 2.0 * cw * (d_l - d_r) + 2.0 * ch * (d_u - d_d)
            if cs != 0.0:
                s0 = (below - 2.0 * p0 + above) * m0
                sm = (p0 - 2.0 * above + p[hm2, w]) * mm
                sp = (p[hp2, w] - 2.0 * below + p0) * mp
                acc_c = acc_c + cs * s0 * s0
                grad = grad + cs * (2.0 * sm - 4.0 * s0 + 2.0 * sp)
            if cl != 0.0:
                # component by component: ti.abs / casts of comparisons on whole vectors
                # crash Taichi's unscalarized codegen (`runtime.vector_codegen`)
                d = p0 - anchor[w]
                for c in ti.static(range(channels)):
                    acc += cl * ti.abs(d[c])
                    grad[c] += cl * (ti.cast(d[c] > 0.0, real) - ti.cast(d[c] < 0.0, real))
            g[h, w] = g[h, w] + grad
        return acc + acc_c.sum()

    @ti.kernel
    def regularize(
        p0: plane_t, p1: plane_t, p2: plane_t, g0: plane_t, g1: plane_t, g2: plane_t,
        a0: row_t, a1: row_t, a2: row_t, coef: coef_t, rows: sums_t, used: ti.i32,
    ):
        """Up to GROUP planes in one launch (`used` of them), parallel over rows
        (`row_pass`), a few rows a task: three top-level loops, three parallel tasks of
        one launch. rows: each row's value, the planes' rows one after another."""
        h0 = p0.shape[0]
        h1 = 0
        h2 = 0
        if used > 1:
            h1 = p1.shape[0]
        if used > 2:
            h2 = p2.shape[0]
        ti.loop_config(block_dim=ROWS_PER_TASK)
        for h in range(h0):
            rows[h] = row_pass(p0, g0, a0, h, coef[0, 0], coef[0, 1], coef[0, 2], coef[0, 3])
        ti.loop_config(block_dim=ROWS_PER_TASK)
        for h in range(h1):
            rows[h0 + h] = row_pass(p1, g1, a1, h, coef[1, 0], coef[1, 1], coef[1, 2], coef[1, 3])
        ti.loop_config(block_dim=ROWS_PER_TASK)
        for h in range(h2):
            rows[h0 + h1 + h] = row_pass(p2, g2, a2, h, coef[2, 0], coef[2, 1], coef[2, 2], coef[2, 3])

    return regularize


def _kernel(dtype: torch.dtype, channels: int, circular: bool, simd: bool):
    """`simd`: the object compiled (and always launched) under `runtime.vector_codegen`."""
    key = (runtime.runtime_token(), str(dtype).split(".")[-1], channels, circular, simd)
    if key not in _KERNELS:
        _KERNELS[key] = runtime.fast_kernel(_build(*key[1:4]))
    return _KERNELS[key]


def _ones_row(width: int, channels: int, dtype, device) -> torch.Tensor:
    key = (width, channels, dtype, str(device))
    if key not in _ONES:
        _ONES[key] = torch.ones(width, channels, dtype=dtype, device=device)
    return _ONES[key]


def _coefficients(shape, tv_w: float, tv_h: float, smooth: float, l1: float, circular: bool) -> list[float]:
    """Each term's weight over its count of terms: (cw, ch, cs, cl) of a plane [H, W, C]."""
    H, W, C = shape
    cw = tv_w / max((W - 1) * H * C, 1) if W > 1 else 0.0
    ch = tv_h / max((H - 1) * W * C, 1) if H > 1 else 0.0
    smooth_rows = H if circular else H - 2
    cs = smooth / (smooth_rows * W * C) if smooth and smooth_rows > 0 else 0.0
    cl = l1 / (H * W * C) if l1 else 0.0
    return [cw, ch, cs, cl]


def plane_regularizer_grads(
    plane: torch.Tensor,
    grad: torch.Tensor,
    *,
    tv_w: float = 0.0,
    tv_h: float = 0.0,
    smooth: float = 0.0,
    l1: float = 0.0,
    circular: bool = False,
    anchor: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Add the weighted regularizers' gradient w.r.t. `plane` [H, W, C] into `grad` (same
    shape, dtype, device; contiguous) and return their value, a 0-d tensor (see the
    module docstring for the terms; each weight multiplies a mean over its terms)."""
    return regularizer_grads_of_planes([plane], [grad], tv_w=tv_w, tv_h=tv_h, smooth=smooth, l1=l1, circular=circular, anchors=[anchor])


def regularizer_grads_of_planes(
    planes: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    *,
    tv_w: float = 0.0,
    tv_h: float = 0.0,
    smooth: float = 0.0,
    l1: float = 0.0,
    circular: bool = False,
    anchors: Optional[Sequence[Optional[torch.Tensor]]] = None,
) -> torch.Tensor:
    """`plane_regularizer_grads` of every plane (the same weights, each a mean over that
    plane's terms), summed: GROUP planes a launch. planes / grads: [H_k, W_k, C] each, one
    C and dtype; anchors: None or one [W_k, C] row (or None: ones) per plane."""
    planes, grads = list(planes), list(grads)
    anchors = list(anchors) if anchors is not None else [None] * len(planes)
    if len(grads) != len(planes) or len(anchors) != len(planes):
        raise ValueError("planes, grads and anchors must have one entry per plane")
    if not planes:
        return torch.zeros((), dtype=torch.float64)
    C, dtype = planes[0].shape[-1], planes[0].dtype
    rows = []
    for plane, grad, anchor in zip(planes, grads, anchors):
        if plane.dim() != 3 or grad.shape != plane.shape or grad.dtype != plane.dtype:
            raise ValueError(f"plane and grad must be [H, W, C] of one dtype, got {tuple(plane.shape)} / {tuple(grad.shape)}")
        if not (plane.is_contiguous() and grad.is_contiguous()):
            raise ValueError("plane and grad must be contiguous (channel-last [H, W, C])")
        if plane.shape[2] != C or plane.dtype != dtype:
            raise ValueError(f"every plane must have {C} channels and dtype {dtype}, got {tuple(plane.shape)} {plane.dtype}")
        H, W, _ = plane.shape
        if anchor is None:
            anchor = _ones_row(W, C, plane.dtype, plane.device)
        elif tuple(anchor.shape) != (W, C):
            raise ValueError(f"anchor must be [W, C] = [{W}, {C}], got {tuple(anchor.shape)}")
        rows.append(anchor.detach().contiguous())
    runtime.ensure_taichi(planes[0].device)
    total = torch.zeros((), dtype=torch.float64)
    for at in range(0, len(planes), GROUP):
        ps, gs, ans = planes[at:at + GROUP], grads[at:at + GROUP], rows[at:at + GROUP]
        used = len(ps)
        coef = torch.tensor([_coefficients(tuple(p.shape), tv_w, tv_h, smooth, l1, circular) for p in ps]
                            + [[0.0] * 4] * (GROUP - used), dtype=dtype, device=ps[0].device)
        row_sums = torch.empty(sum(p.shape[0] for p in ps), dtype=dtype, device=ps[0].device)
        # detached views: Taichi's launcher would otherwise touch the tensors' .grad (taichi#8101);
        # unused slots repeat the first plane (never read: `used`)
        ps = [p.detach() for p in ps] + [ps[0].detach()] * (GROUP - used)
        gs = [g.detach() for g in gs] + [gs[0].detach()] * (GROUP - used)
        ans = ans + [ans[0]] * (GROUP - used)
        simd = runtime.simd_vectors(C, [*ps, *gs, *ans])
        with runtime.vector_codegen(simd), runtime.fixed_cpu_block_dim():  # C channels as one SIMD vector
            _kernel(dtype, C, circular, simd)(*ps, *gs, *ans, coef, row_sums, used)
        total = total + row_sums.sum().double()
    return total.to(dtype)
