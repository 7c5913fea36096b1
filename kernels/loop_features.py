"""The loop field's features at many loop phases at once, in Taichi (differentiable).

`loop_features(points, phases, static, loop_planes) -> [F, N, C * S]`: for points [N, 3]
in the normalised cube [-1, 1]^3 and loop phases [F] in [0, 1), the k-Planes features of
a loop model,

    out[f, n, s] = static[n, s] * xt_s(x_n, p_f) * yt_s(y_n, p_f) * zt_s(z_n, p_f),

where `static` [N, S * C] is the product of the frozen space planes (xy, xz, yz) per
scale (the same at every phase, so computed once per point by the caller) and
`loop_planes` per scale [xt, yt, zt], each [F_rows, R_axis, C] channel-last, are sampled
bilinearly: along space with align_corners and border clamp, along the loop's time axis
periodically (row p * F_rows). It is exactly `reference.hexplane_features` on the points
repeated at every phase (time coordinate 2p - 1, `wrap_time=True`) with the space
planes in their slots, which the tests compare against in float64.

Why: a distillation step renders every ray sample at all F phases (F = 24 on the `cpu`
preset: 590k evaluations). Evaluated as separate 4D points, each repeats the three
space-plane gathers, the expensive part (the space planes are MBs, the loop planes a few
hundred kB that stay in cache). Here the space part is read once per point.

Gradient: with respect to the loop planes only (the space planes are frozen in
distillation; `static` and the points get none). On the CPU each thread scatters into
its own copy of the (small) loop-plane gradients, summed afterwards; on CUDA one task
per point and atomic adds (not run on a GPU yet; the tests run that path on the CPU).
"""

from typing import Sequence

import torch

from . import runtime

_KERNELS: dict = {}


def _build(real_name: str, channels: int, private: bool):
    ti = runtime._taichi()
    real = ti.f64 if real_name == "float64" else ti.f32
    vec = ti.types.vector(channels, real)
    points_t = ti.types.ndarray(dtype=real, ndim=2)  # [N, 3]
    phases_t = ti.types.ndarray(dtype=real, ndim=1)  # [F] time coordinates 2 p - 1
    rows_t = ti.types.ndarray(dtype=vec, ndim=2)  # static [N, S] of C
    plane_t = ti.types.ndarray(dtype=vec, ndim=2)  # loop plane [F_rows, R] of C
    out_t = ti.types.ndarray(dtype=vec, ndim=3)  # [F, N, S] of C
    buffer_t = ti.types.ndarray(dtype=vec, ndim=3)  # [chunks, F_rows, R] of C

    @ti.func
    def space_cell(x, res):
        top = ti.cast(res - 1, real)
        pos = ti.min(ti.max((x + 1.0) * 0.5 * top, 0.0), top)
        i0 = ti.min(ti.cast(ti.floor(pos), ti.i32), ti.max(res - 2, 0))
        return i0, ti.min(i0 + 1, res - 1), pos - ti.cast(i0, real)

    @ti.func
    def time_cell(t, rows):
        """Row cell of time coordinate t = 2 p - 1, computed as the hexplane kernel does
        (same operations, same rounding: a loop whose phases all start equal is told
        apart only by these roundings; see `loop_features`)."""
        pos = (t + 1.0) * 0.5 * ti.cast(rows, real)
        fl = ti.floor(pos)
        r0 = ti.cast(fl, ti.i32) % rows  # Taichi's % on ints follows Python: never negative
        return r0, (r0 + 1) % rows, pos - fl

    @ti.func
    def sample(plane: ti.template(), r0, r1, wr, u0, u1, wu):
        lo = plane[r0, u0] + wu * (plane[r0, u1] - plane[r0, u0])
        hi = plane[r1, u0] + wu * (plane[r1, u1] - plane[r1, u0])
        return lo + wr * (hi - lo)

    @ti.func
    def scatter(planes: ti.template(), grads: ti.template(), chunk, cells: ti.template(), t, g):
        """Add g [C] (d loss / d the feature product of one point, phase and scale, times the
        static part) through the product into the three loop planes' gradient buffers."""
        r0, r1, wr = time_cell(t, planes[0].shape[0])
        vals = [sample(planes[a], r0, r1, wr, cells[a][0], cells[a][1], cells[a][2]) for a in ti.static(range(3))]
        for a in ti.static(range(3)):
            others = g
            for b in ti.static(range(3)):
                if ti.static(b != a):
                    others = others * vals[b]
            u0, u1, wu = cells[a]
            gp = ti.static(grads[a])
            if ti.static(private):  # this chunk's own buffer: plain read-add-write
                gp[chunk, r0, u0] = gp[chunk, r0, u0] + ((1.0 - wr) * (1.0 - wu)) * others
                gp[chunk, r0, u1] = gp[chunk, r0, u1] + ((1.0 - wr) * wu) * others
                gp[chunk, r1, u0] = gp[chunk, r1, u0] + (wr * (1.0 - wu)) * others
                gp[chunk, r1, u1] = gp[chunk, r1, u1] + (wr * wu) * others
            else:  # one buffer for all threads (CUDA): atomic adds
                gp[0, r0, u0] += ((1.0 - wr) * (1.0 - wu)) * others
                gp[0, r0, u1] += ((1.0 - wr) * wu) * others
                gp[0, r1, u0] += (wr * (1.0 - wu)) * others
                gp[0, r1, u1] += (wr * wu) * others

    @ti.kernel
    def forward(points: points_t, phases: phases_t, static: rows_t, lx: plane_t, ly: plane_t, lz: plane_t, out: out_t, scale: ti.i32):
        planes = ti.static((lx, ly, lz))
        n_points = points.shape[0]
        n_phases = phases.shape[0]
        for n in range(n_points):
            cells = [space_cell(points[n, a], planes[a].shape[1]) for a in ti.static(range(3))]
            s = static[n, scale]
            for f in range(n_phases):
                r0, r1, wr = time_cell(phases[f], lx.shape[0])
                value = s
                for a in ti.static(range(3)):
                    value *= sample(planes[a], r0, r1, wr, cells[a][0], cells[a][1], cells[a][2])
                out[f, n, scale] = value

    @ti.kernel
    def backward(
        points: points_t, phases: phases_t, static: rows_t, lx: plane_t, ly: plane_t, lz: plane_t, grad_out: out_t, scale: ti.i32,
        gx: buffer_t, gy: buffer_t, gz: buffer_t, n_chunks: ti.i32, chunk_size: ti.i32,
    ):
        planes = ti.static((lx, ly, lz))
        grads = ti.static((gx, gy, gz))
        n_points = points.shape[0]
        n_phases = phases.shape[0]
        if ti.static(private):
            ti.loop_config(block_dim=1)  # one task per chunk (needs runtime.fixed_cpu_block_dim)
        for chunk in range(n_chunks):  # private: a few chunks of points; else one task per point
            start, stop = chunk, chunk + 1
            if ti.static(private):
                start, stop = chunk * chunk_size, ti.min((chunk + 1) * chunk_size, n_points)
            for n in range(start, stop):  # serial in a chunk
                cells = [space_cell(points[n, a], planes[a].shape[1]) for a in ti.static(range(3))]
                s = static[n, scale]
                for f in range(n_phases):
                    scatter(planes, grads, chunk, cells, phases[f], grad_out[f, n, scale] * s)

    logits_t = ti.types.ndarray(dtype=real, ndim=2)  # [N, F]
    # [N, F, 3] as scalars: a 3-vector ndarray would be an unaligned <3 x float> in the SIMD build
    rgb_t = ti.types.ndarray(dtype=real, ndim=3)
    weight_t = ti.types.ndarray(dtype=vec, ndim=1)  # sigma weight [S] of C
    basis_t = ti.types.ndarray(dtype=vec, ndim=3)  # colour basis [rays, 3, S] of C
    ray_t = ti.types.ndarray(dtype=ti.i32, ndim=1)  # the ray of each point [N]

    @ti.kernel
    def decoded_forward(
        points: points_t, phases: phases_t, static: rows_t, lx: plane_t, ly: plane_t, lz: plane_t,
        w_sigma: weight_t, basis: basis_t, ray_of: ray_t, sigma: logits_t, rgb: rgb_t, scale: ti.i32,
    ):
        """Adds scale `scale`'s share of the linear decoder's logits: sigma[n, f] +=
        w_s . f_s, rgb[n, f, c] += basis[ray_of[n], c, s] . f_s (the features never leave
        the registers)."""
        planes = ti.static((lx, ly, lz))
        for n in range(points.shape[0]):
            cells = [space_cell(points[n, a], planes[a].shape[1]) for a in ti.static(range(3))]
            s = static[n, scale]
            ray = ray_of[n]
            w = w_sigma[scale]
            b0, b1, b2 = basis[ray, 0, scale], basis[ray, 1, scale], basis[ray, 2, scale]
            for f in range(phases.shape[0]):
                r0, r1, wr = time_cell(phases[f], lx.shape[0])
                value = s
                for a in ti.static(range(3)):
                    value *= sample(planes[a], r0, r1, wr, cells[a][0], cells[a][1], cells[a][2])
                sigma[n, f] += w.dot(value)
                rgb[n, f, 0] += b0.dot(value)
                rgb[n, f, 1] += b1.dot(value)
                rgb[n, f, 2] += b2.dot(value)

    @ti.kernel
    def decoded_backward(
        points: points_t, phases: phases_t, static: rows_t, lx: plane_t, ly: plane_t, lz: plane_t,
        w_sigma: weight_t, basis: basis_t, ray_of: ray_t, g_sigma: logits_t, g_rgb: rgb_t, scale: ti.i32,
        gx: buffer_t, gy: buffer_t, gz: buffer_t, n_chunks: ti.i32, chunk_size: ti.i32,
    ):
        planes = ti.static((lx, ly, lz))
        grads = ti.static((gx, gy, gz))
        n_points = points.shape[0]
        if ti.static(private):
            ti.loop_config(block_dim=1)  # one task per chunk (needs runtime.fixed_cpu_block_dim)
        for chunk in range(n_chunks):  # private: a few chunks of points; else one task per point
            start, stop = chunk, chunk + 1
            if ti.static(private):
                start, stop = chunk * chunk_size, ti.min((chunk + 1) * chunk_size, n_points)
            for n in range(start, stop):  # serial in a chunk
                cells = [space_cell(points[n, a], planes[a].shape[1]) for a in ti.static(range(3))]
                s = static[n, scale]
                ray = ray_of[n]
                w = w_sigma[scale]
                b0, b1, b2 = basis[ray, 0, scale], basis[ray, 1, scale], basis[ray, 2, scale]
                for f in range(phases.shape[0]):
                    # d loss / d features of this scale, then through the product
                    g = (g_sigma[n, f] * w + g_rgb[n, f, 0] * b0 + g_rgb[n, f, 1] * b1 + g_rgb[n, f, 2] * b2) * s
                    scatter(planes, grads, chunk, cells, phases[f], g)

    return {"forward": forward, "backward": backward, "decoded_forward": decoded_forward, "decoded_backward": decoded_backward}


PRIVATE_BUFFERS = True
"""On the CPU the backward scatters into per-thread private buffers (float atomics are
compare-and-swap loops there); CUDA always uses one buffer and atomic adds. False forces
the atomic path on the CPU too (the tests check it against the twin)."""


def _private() -> bool:
    return PRIVATE_BUFFERS and not runtime.is_cuda()


def _kernels(dtype: torch.dtype, channels: int, private: bool = True, simd: bool = False):
    """`simd`: the objects compiled (and always launched) under `runtime.vector_codegen`."""
    key = (runtime.runtime_token(), str(dtype).split(".")[-1], channels, private, simd)
    if key not in _KERNELS:
        _KERNELS[key] = {name: runtime.fast_kernel(k) for name, k in _build(*key[1:4]).items()}
    return _KERNELS[key]


def _loop_plane_grads(points, loop_flat, n_scales: int, kernel: str, args, vectors) -> list:
    """The loop planes' gradients from backward kernel `kernel`, scale by scale:
    `args(s, scale_planes)` gives its leading arguments; the gradient buffers (one per
    thread on the CPU, summed; one with atomics on CUDA) and the chunking follow.
    `vectors`: the other channel-vector arguments (their alignment picks the build)."""
    n = points.shape[0]
    runtime.ensure_taichi(points.device)
    private = _private()
    channels = loop_flat[0].shape[2]
    # (atomic adds of whole vectors are not supported by the SIMD build)
    simd = private and runtime.simd_vectors(channels, [*loop_flat, *vectors])
    kern = _kernels(points.dtype, channels, private, simd)
    n_chunks = max(1, min(runtime.cpu_threads(), n)) if private else n
    n_buffers = n_chunks if private else 1
    chunk_size = -(-n // n_chunks)
    grads = []
    for s in range(n_scales):
        scale = loop_flat[3 * s : 3 * s + 3]
        buffers = [torch.zeros((n_buffers,) + tuple(p.shape), dtype=p.dtype, device=p.device) for p in scale]
        with runtime.fixed_cpu_block_dim(), runtime.vector_codegen(simd):
            kern[kernel](*args(s, scale), *buffers, n_chunks, chunk_size)
        grads.extend(b.sum(dim=0) if n_buffers > 1 else b[0] for b in buffers)
    return grads


class _LoopFeatures(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, phases, static, n_scales, *loop_flat):
        points, phases, static = points.detach(), phases.detach(), static.detach()
        loop_flat = [p.detach() for p in loop_flat]  # (Taichi would touch a .grad: taichi#8101)
        channels = loop_flat[0].shape[2]
        ctx.n_scales = n_scales
        ctx.save_for_backward(points, phases, static, *loop_flat)
        out = torch.empty(phases.shape[0], points.shape[0], n_scales, channels, dtype=points.dtype, device=points.device)
        if points.shape[0] and phases.shape[0]:
            runtime.ensure_taichi(points.device)
            static_rows = static.view(points.shape[0], n_scales, channels)
            simd = runtime.simd_vectors(channels, [*loop_flat, static_rows])  # (out: fresh, aligned)
            kern = _kernels(points.dtype, channels, simd=simd)
            with runtime.vector_codegen(simd):
                for s in range(n_scales):
                    kern["forward"](points, phases, static_rows, *loop_flat[3 * s : 3 * s + 3], out, s)
        return out.view(phases.shape[0], points.shape[0], n_scales * channels)

    @staticmethod
    def backward(ctx, grad_out):
        points, phases, static, *loop_flat = (t.detach() for t in ctx.saved_tensors)
        n_scales = ctx.n_scales
        channels = loop_flat[0].shape[2]
        needs = ctx.needs_input_grad[4:]
        if not any(needs):
            return (None,) * (4 + len(loop_flat))
        n = points.shape[0]
        if n == 0 or phases.shape[0] == 0:
            return (None, None, None, None, *(torch.zeros_like(p) if need else None for p, need in zip(loop_flat, needs)))
        grad_out = grad_out.detach().contiguous().view(phases.shape[0], n, n_scales, channels)
        static_rows = static.view(n, n_scales, channels)
        grads = _loop_plane_grads(
            points, loop_flat, n_scales, "backward",
            lambda s, scale: (points, phases, static_rows, *scale, grad_out, s), [static_rows, grad_out],
        )
        return (None, None, None, None, *(g if need else None for g, need in zip(grads, needs)))


class _LoopDecoded(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, phases, static, w_sigma, basis, ray_of, n_scales, *loop_flat):
        points, phases, static = points.detach(), phases.detach(), static.detach()
        w_sigma, basis = w_sigma.detach(), basis.detach()
        loop_flat = [p.detach() for p in loop_flat]
        channels = loop_flat[0].shape[2]
        n, f = points.shape[0], phases.shape[0]
        ctx.n_scales = n_scales
        ctx.save_for_backward(points, phases, static, w_sigma, basis, ray_of, *loop_flat)
        sigma = torch.zeros(n, f, dtype=points.dtype, device=points.device)
        rgb = torch.zeros(n, f, 3, dtype=points.dtype, device=points.device)
        if n and f:
            runtime.ensure_taichi(points.device)
            static_rows = static.view(n, n_scales, channels)
            w_rows = w_sigma.view(n_scales, channels)
            basis_rows = basis.view(basis.shape[0], 3, n_scales, channels)
            simd = runtime.simd_vectors(channels, [*loop_flat, static_rows, w_rows, basis_rows])
            kern = _kernels(points.dtype, channels, simd=simd)
            with runtime.vector_codegen(simd):
                for s in range(n_scales):
                    kern["decoded_forward"](points, phases, static_rows, *loop_flat[3 * s : 3 * s + 3], w_rows, basis_rows, ray_of, sigma, rgb, s)
        return sigma.t(), rgb.transpose(0, 1)

    @staticmethod
    def backward(ctx, g_sigma, g_rgb):
        points, phases, static, w_sigma, basis, ray_of, *loop_flat = (t.detach() for t in ctx.saved_tensors)
        n_scales = ctx.n_scales
        needs = ctx.needs_input_grad[7:]
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            raise NotImplementedError("loop_features_decoded: gradients w.r.t. the decoder are not implemented (it is frozen in distillation)")
        n = points.shape[0]
        none = (None,) * 7
        if not any(needs) or n == 0 or phases.shape[0] == 0:
            return (*none, *(torch.zeros_like(p) if need else None for p, need in zip(loop_flat, needs)))
        channels = loop_flat[0].shape[2]
        g_sigma = (torch.zeros(phases.shape[0], n, dtype=points.dtype, device=points.device) if g_sigma is None else g_sigma).t().contiguous()
        g_rgb = (torch.zeros(phases.shape[0], n, 3, dtype=points.dtype, device=points.device) if g_rgb is None else g_rgb).transpose(0, 1).contiguous()
        static_rows = static.view(n, n_scales, channels)
        w_rows = w_sigma.view(n_scales, channels)
        basis_rows = basis.view(basis.shape[0], 3, n_scales, channels)
        grads = _loop_plane_grads(
            points, loop_flat, n_scales, "decoded_backward",
            lambda s, scale: (points, phases, static_rows, *scale, w_rows, basis_rows, ray_of, g_sigma, g_rgb, s),
            [static_rows, w_rows, basis_rows],
        )
        return (*none, *(g if need else None for g, need in zip(grads, needs)))


def loop_features_decoded(
    points: torch.Tensor, phases: torch.Tensor, static: torch.Tensor, loop_planes: Sequence[Sequence[torch.Tensor]],
    sigma_weight: torch.Tensor, basis: torch.Tensor, rays: "int | torch.Tensor",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear decoder's logits of `loop_features`, without the features ever stored:
    (sigma logit [F, N] = features . sigma_weight, colour logits [F, N, 3] = basis[ray(n)] @
    features). `rays`: the points per ray (ray(n) = n // rays), or the ray of each point
    as an integer tensor [N] (a subset of a batch's points). sigma_weight [S * C]; basis
    [rays, 3, S * C] (the decoder's direction basis, one per ray). A distillation step's features would
    be [F, N, 48] floats (113 MB on the `cpu` preset), passed through the decoder's
    matrix products and their backward; these outputs are 4 floats per sample.
    Differentiable w.r.t. the loop planes (the decoder is frozen: its weights get none).
    """
    n_scales = len(loop_planes)
    flat = [p.contiguous() for scale in loop_planes for p in scale]
    channels = flat[0].shape[2]
    if isinstance(rays, torch.Tensor):
        ray_of = rays.to(device=points.device, dtype=torch.int32).contiguous()
        if ray_of.shape != (points.shape[0],) or (len(ray_of) and not (0 <= int(ray_of.min()) and int(ray_of.max()) < basis.shape[0])):
            raise ValueError(f"rays must be [N] = [{points.shape[0]}] indices into the {basis.shape[0]} rays of basis")
    else:
        if basis.shape[0] * int(rays) != points.shape[0]:
            raise ValueError(f"basis must be [rays, 3, {n_scales * channels}] with rays * points per ray = N, got {tuple(basis.shape)}")
        ray_of = (torch.arange(points.shape[0], device=points.device) // int(rays)).to(torch.int32)
    if basis.shape[1:] != (3, n_scales * channels):
        raise ValueError(f"basis must be [rays, 3, {n_scales * channels}], got {tuple(basis.shape)}")
    if sigma_weight.numel() != n_scales * channels:
        raise ValueError(f"sigma_weight must have {n_scales * channels} values, got {sigma_weight.numel()}")
    loop_features_check(points, static, flat, n_scales)
    return _LoopDecoded.apply(
        points.contiguous(), _time_coordinates(phases, points.dtype), static.contiguous(),
        sigma_weight.reshape(-1).to(points.dtype).contiguous(), basis.to(points.dtype).contiguous(), ray_of, n_scales, *flat,
    )


def loop_features_check(points, static, flat, n_scales) -> None:
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got {tuple(points.shape)}")
    if not flat or len(flat) != 3 * n_scales:
        raise ValueError("loop_planes: per scale the three planes [xt, yt, zt]")
    channels, rows = flat[0].shape[2], flat[0].shape[0]
    if static.shape != (points.shape[0], n_scales * channels):
        raise ValueError(f"static must be [N, S * C] = [{points.shape[0]}, {n_scales * channels}], got {tuple(static.shape)}")
    for p in flat:
        if p.dim() != 3 or p.shape[0] != rows or p.shape[2] != channels or p.dtype != points.dtype:
            raise ValueError("every loop plane must be [F_rows, R, C] with one F_rows, C and the points' dtype")


def loop_features(points: torch.Tensor, phases: torch.Tensor, static: torch.Tensor, loop_planes: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """[F, N, C * S] loop-field features (see the module docstring).

    points [N, 3] and phases [F] float32/float64; static [N, C * S] (no gradient);
    loop_planes: per scale [xt, yt, zt], each [F_rows, R_axis, C], contiguous channel-last.
    Differentiable w.r.t. the loop planes.
    """
    n_scales = len(loop_planes)
    flat = [p.contiguous() for scale in loop_planes for p in scale]
    loop_features_check(points, static, flat, n_scales)
    return _LoopFeatures.apply(points.contiguous(), _time_coordinates(phases, points.dtype), static.contiguous(), n_scales, *flat)


def _time_coordinates(phases: torch.Tensor, dtype) -> torch.Tensor:
    """Loop phases [F] -> the field's time coordinates 2 p - 1, in the order of operations
    `LoopField.features` uses, so both paths round alike. This matters: distilled from
    loop planes that start equal at every phase (init 'ones'), the phases are told apart
    only by rounding in the time interpolation, which the looping loss then amplifies;
    with the phase multiplied out exactly (p * F) the loop never starts to move."""
    return (phases.to(dtype) * 2.0 - 1.0).contiguous()
