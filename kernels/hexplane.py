"""Multiscale hex-/tri-plane interpolation in Taichi, differentiable from PyTorch.

`hexplane_features(points, planes, *, wrap_time=False, channels_last=False)` is the
Taichi twin of `loopnerf.kernels.reference.hexplane_features` (same conventions, see its
module docstring): points [N, D] (D = 3 or 4) in [-1, 1] -> features [N, C * S], the
product over a scale's planes of bilinear samples (align_corners=True, border clamp),
concatenated over scales; `wrap_time=True` makes the time axis periodic.

Implementation notes (DESIGN.md section 8):

* One kernel launch per scale, parallel over points; planes are read channel-last
  ([H, W, C]) as cells of a compile-time `ti.Vector` of C channels (kernels are compiled
  per C, dtype, D and wrap_time); the planes (<= 6) and their 4 corners are unrolled,
  nothing else. Channel-first planes are permuted to channel-last once per call (and
  their gradients permuted back by autograd).
* Training on the CPU (plane gradients only): the forward keeps each plane's bilinear
  sample ([N, P, C] per scale) and the backward runs one task per plane; task k walks
  every point and alone writes plane k's gradient with plain read-add-write (no
  atomics, which compile to compare-and-swap loops there, and no buffers to zero and
  sum). On the `cpu` preset's field this took the backward from 32.6 to 13.5 ms a step.
* Otherwise the backward recomputes the bilinear samples (nothing but the inputs is
  saved) and scatters plane and point gradients: on the CPU each of a few point chunks
  (one per thread) into its own private gradient buffer, summed afterwards; on CUDA,
  where atomics are cheap, one buffer and `atomic_add`.
* Gradients are returned in fresh buffers (never a tensor's own `.grad`: taichi#8101).
"""

import torch

from . import runtime
from .reference import plane_pairs


_KERNELS: dict = {}

PLANE_TASK_BACKWARD = True
"""CPU, points without gradient (training): keep the samples in the forward and run the
backward one task per plane (`backward_by_plane`). False: the per-thread private
buffers for every case (what the kernel did before; `benchmarks/train_step.py` uses it
to time the step as it was)."""
PLANE_TASK_MAX_BYTES = 96 << 20
"""Largest sample store the plane-task backward keeps (bytes). A distillation step
evaluates F phases of every sample (590k points on the `cpu` preset: 680 MB of
samples), where writing and reading the store costs more than the private buffers."""


def _axis_resolutions(dims: int, scale: list) -> list[int]:
    """Samples along each coordinate axis (x, y, z[, t]) of one scale's channel-last planes; 4 values (t = 1 for 3D)."""
    res: dict[int, int] = {}
    for (i, j), plane in zip(plane_pairs(dims), scale):
        res.setdefault(i, plane.shape[1])  # coordinate i indexes W
        res.setdefault(j, plane.shape[0])  # coordinate j indexes H
    return [res.get(a, 1) for a in range(4)]


def _build_kernels(real_name: str, dims: int, wrap_time: bool, channels: int):
    """Taichi kernels (compiled on first call) for one (dtype, D, wrap_time, C) combination.

    The channel vector is a compile-time `ti.Vector` of C values per plane cell. Taichi
    scalarizes it by default (C scalar loads and multiply-adds, which LLVM does not pack
    back together); the `simd` build (`_kernels`) is compiled under
    `runtime.vector_codegen`, where a cell's loads, products and read-add-writes are
    LLVM vector operations, i.e. SIMD registers: the `cpu` preset field's forward
    22 -> 6 ms, its backward 17 -> 11.5 ms a training step. (A runtime
    `for c in range(C)` loop does not vectorise either: with a dozen opaque plane and
    gradient pointers LLVM cannot rule out aliasing between them.)
    """
    ti = runtime._taichi()
    real = ti.f64 if real_name == "float64" else ti.f32
    pairs = plane_pairs(dims)
    n_planes = len(pairs)
    vec = ti.types.vector(channels, real)
    is_time = [j == 3 for (_, j) in pairs]  # the space-time planes (time is the last coordinate)
    points_t = ti.types.ndarray(dtype=real, ndim=2)
    mask_t = ti.types.ndarray(dtype=ti.u8, ndim=1)  # per point: 1 = static part (space-time planes as ones)
    plane_t = ti.types.ndarray(dtype=vec, ndim=2)  # [H, W] cells of C channels
    rows_t = ti.types.ndarray(dtype=vec, ndim=2)  # features / their gradient [N, S] of C
    buffer_t = ti.types.ndarray(dtype=vec, ndim=3)  # gradient buffers [chunks, H, W] of C

    @ti.func
    def locate(x, res, periodic: ti.template()):
        """Coordinate x of an axis with `res` samples -> (i0, i1, w, d position / d x)."""
        i0 = 0
        i1 = 0
        w = ti.cast(0.0, real)
        dpos = ti.cast(0.0, real)
        if ti.static(periodic):
            pos = (x + 1.0) * 0.5 * ti.cast(res, real)
            fl = ti.floor(pos)
            w = pos - fl
            i0 = ti.cast(fl, ti.i32) % res  # Taichi's % on ints follows Python: never negative
            i1 = (i0 + 1) % res
            dpos = 0.5 * ti.cast(res, real)
        else:
            top = ti.cast(res - 1, real)
            pos = (x + 1.0) * 0.5 * top
            dpos = 0.5 * top
            if pos <= 0.0:  # at and beyond the clamp the coordinate gradient is zero (torch)
                pos = ti.cast(0.0, real)
                dpos = ti.cast(0.0, real)
            elif pos >= top:
                pos = top
                dpos = ti.cast(0.0, real)
            i0 = ti.min(ti.cast(ti.floor(pos), ti.i32), ti.max(res - 2, 0))
            w = pos - ti.cast(i0, real)
            i1 = ti.min(i0 + 1, res - 1)
        return i0, i1, w, dpos

    @ti.func
    def bilerp(plane: ti.template(), cu: ti.template(), cv: ti.template()):
        """Bilinear sample of a plane at cells cu (along W) and cv (along H): (value, d/du, d/dv) per channel."""
        a00 = plane[cv[0], cu[0]]
        a01 = plane[cv[0], cu[1]]
        a10 = plane[cv[1], cu[0]]
        a11 = plane[cv[1], cu[1]]
        lo = a00 + cu[2] * (a01 - a00)
        hi = a10 + cu[2] * (a11 - a10)
        return lo + cv[2] * (hi - lo), (a01 - a00) + cv[2] * ((a11 - a10) - (a01 - a00)), hi - lo

    @ti.func
    def still_at(still: ti.template(), masked, n):
        """1 when point n takes the static part (its space-time planes read as ones)."""
        r = 0
        if masked != 0:
            r = ti.cast(still[n], ti.i32)
        return r

    @ti.func
    def plane_sample(planes: ti.template(), k: ti.template(), cells: ti.template(), is_still):
        """Plane k's bilinear sample at a point; ones for a space-time plane of a static point."""
        v = ti.Vector.one(real, channels)
        if ti.static(is_time[k]):
            if is_still == 0:
                v = bilerp(planes[k], cells[pairs[k][0]], cells[pairs[k][1]])[0]
        else:
            v = bilerp(planes[k], cells[pairs[k][0]], cells[pairs[k][1]])[0]
        return v

    @ti.func
    def as_read(sample, k: ti.template(), is_still):
        """Plane k's sample as a point reads it: ones for a space-time plane of a static point."""
        v = sample
        if ti.static(is_time[k]):
            if is_still != 0:
                v = ti.Vector.one(real, channels)
        return v

    @ti.kernel
    def forward(
        points: points_t, p0: plane_t, p1: plane_t, p2: plane_t, p3: plane_t, p4: plane_t, p5: plane_t,
        out: rows_t, scale: ti.i32, rx: ti.i32, ry: ti.i32, rz: ti.i32, rt: ti.i32, still: mask_t, masked: ti.i32,
    ):
        planes = ti.static((p0, p1, p2, p3, p4, p5))
        for n in range(points.shape[0]):
            res = ti.Vector([rx, ry, rz, rt])
            cells = [locate(points[n, a], res[a], ti.static(wrap_time and a == 3)) for a in ti.static(range(dims))]
            is_still = still_at(still, masked, n)
            value = plane_sample(planes, 0, cells, is_still)
            for k in ti.static(range(1, n_planes)):
                value *= plane_sample(planes, k, cells, is_still)
            out[n, scale] = value

    samples_t = ti.types.ndarray(dtype=vec, ndim=2)  # [N, P] bilinear samples of one scale

    @ti.kernel
    def forward_saving(
        points: points_t, p0: plane_t, p1: plane_t, p2: plane_t, p3: plane_t, p4: plane_t, p5: plane_t,
        out: rows_t, samples: samples_t, scale: ti.i32, rx: ti.i32, ry: ti.i32, rz: ti.i32, rt: ti.i32,
        still: mask_t, masked: ti.i32,
    ):
        """`forward`, also keeping every plane's sample [N, P] for `backward_by_plane`."""
        planes = ti.static((p0, p1, p2, p3, p4, p5))
        for n in range(points.shape[0]):
            res = ti.Vector([rx, ry, rz, rt])
            cells = [locate(points[n, a], res[a], ti.static(wrap_time and a == 3)) for a in ti.static(range(dims))]
            is_still = still_at(still, masked, n)
            value = ti.Vector.one(real, channels)
            for k in ti.static(range(n_planes)):
                sample = plane_sample(planes, k, cells, is_still)
                if ti.static(is_time[k]):  # a static point's ones are never read back
                    if is_still == 0:
                        samples[n, k] = sample
                else:
                    samples[n, k] = sample
                value *= sample
            out[n, scale] = value

    @ti.kernel
    def backward_by_plane(
        points: points_t, samples: samples_t, grad_out: rows_t, scale: ti.i32, rx: ti.i32, ry: ti.i32, rz: ti.i32, rt: ti.i32,
        g0: plane_t, g1: plane_t, g2: plane_t, g3: plane_t, g4: plane_t, g5: plane_t, wanted: ti.i32,
        still: mask_t, masked: ti.i32,
    ):
        """Plane gradients of one scale, one task per plane (CPU): task k walks every point
        and alone writes plane k's gradient, so there are no private buffers to zero and
        sum, and no atomics; the other planes' samples come from the forward."""
        grads = ti.static((g0, g1, g2, g3, g4, g5))
        n_points = points.shape[0]
        ti.loop_config(block_dim=1)  # one task per plane (needs runtime.fixed_cpu_block_dim)
        for task in range(n_planes):
            for k in ti.static(range(n_planes)):
                if task == k and (wanted >> k) & 1:  # bit k: plane k needs its gradient
                    i, j = ti.static(pairs[k])
                    gp = ti.static(grads[k])
                    # the gradient arrives uninitialised (torch.empty): the task zeroes
                    # its own plane first, inside the launch (a torch fill between two
                    # launches ran at a third of its speed, its threads meeting
                    # Taichi's on two cores)
                    for v in range(gp.shape[0]):
                        for u in range(gp.shape[1]):
                            gp[v, u] = ti.Vector.zero(real, channels)
                    for n in range(n_points):  # serial inside the task
                        is_still = still_at(still, masked, n)
                        skip = 0
                        if ti.static(is_time[k]):  # a static point reads this plane as ones
                            skip = is_still
                        if skip == 0:
                            res = ti.Vector([rx, ry, rz, rt])
                            u0, u1, wu, _du = locate(points[n, i], res[i], ti.static(wrap_time and i == 3))
                            v0, v1, wv, _dv = locate(points[n, j], res[j], ti.static(wrap_time and j == 3))
                            others = grad_out[n, scale]
                            for m in ti.static(range(n_planes)):
                                if ti.static(m != k):
                                    if ti.static(is_time[m]):  # ones for a static point (not stored)
                                        if is_still == 0:
                                            others = others * samples[n, m]
                                    else:
                                        others = others * samples[n, m]
                            gp[v0, u0] = gp[v0, u0] + ((1.0 - wu) * (1.0 - wv)) * others
                            gp[v0, u1] = gp[v0, u1] + (wu * (1.0 - wv)) * others
                            gp[v1, u0] = gp[v1, u0] + ((1.0 - wu) * wv) * others
                            gp[v1, u1] = gp[v1, u1] + (wu * wv) * others

    def make_backward(private: bool, need_points: bool):
        @ti.kernel
        def backward(
            points: points_t, p0: plane_t, p1: plane_t, p2: plane_t, p3: plane_t, p4: plane_t, p5: plane_t,
            grad_out: rows_t, scale: ti.i32, rx: ti.i32, ry: ti.i32, rz: ti.i32, rt: ti.i32,
            g0: buffer_t, g1: buffer_t, g2: buffer_t, g3: buffer_t, g4: buffer_t, g5: buffer_t,
            grad_points: points_t, n_chunks: ti.i32, chunk_size: ti.i32, still: mask_t, masked: ti.i32,
        ):
            planes = ti.static((p0, p1, p2, p3, p4, p5))
            grads = ti.static((g0, g1, g2, g3, g4, g5))
            n_points = points.shape[0]
            if ti.static(private):
                # a few chunks, one per thread: block_dim=1 makes each chunk its own task
                # (needs runtime.fixed_cpu_block_dim at compile time, see there)
                ti.loop_config(block_dim=1)
            for chunk in range(n_chunks):
                start = chunk
                stop = chunk + 1
                buf = 0
                if ti.static(private):
                    start = chunk * chunk_size
                    stop = ti.min(start + chunk_size, n_points)
                    buf = chunk
                for n in range(start, stop):  # serial inside a chunk
                    res = ti.Vector([rx, ry, rz, rt])
                    cells = [
                        locate(points[n, a], res[a], ti.static(wrap_time and a == 3)) for a in ti.static(range(dims))
                    ]
                    is_still = still_at(still, masked, n)
                    samples = [
                        bilerp(planes[k], cells[pairs[k][0]], cells[pairs[k][1]]) for k in ti.static(range(n_planes))
                    ]
                    vals = [as_read(samples[k][0], k, is_still) for k in ti.static(range(n_planes))]
                    g = grad_out[n, scale]
                    dx = ti.Vector([0.0] * dims, dt=real)
                    for k in ti.static(range(n_planes)):
                        i, j = ti.static(pairs[k])
                        u0, u1, wu, du = cells[i]
                        v0, v1, wv, dv = cells[j]
                        others = g
                        for m in ti.static(range(n_planes)):
                            if ti.static(m != k):
                                others = others * vals[m]
                        if ti.static(is_time[k]):  # a static point: no gradient reaches this plane
                            if is_still != 0:
                                others = ti.Vector.zero(real, channels)
                        gp = ti.static(grads[k])
                        if ti.static(private):
                            gp[buf, v0, u0] = gp[buf, v0, u0] + ((1.0 - wu) * (1.0 - wv)) * others
                            gp[buf, v0, u1] = gp[buf, v0, u1] + (wu * (1.0 - wv)) * others
                            gp[buf, v1, u0] = gp[buf, v1, u0] + ((1.0 - wu) * wv) * others
                            gp[buf, v1, u1] = gp[buf, v1, u1] + (wu * wv) * others
                        else:
                            gp[0, v0, u0] += ((1.0 - wu) * (1.0 - wv)) * others  # atomic (CUDA)
                            gp[0, v0, u1] += (wu * (1.0 - wv)) * others
                            gp[0, v1, u0] += ((1.0 - wu) * wv) * others
                            gp[0, v1, u1] += (wu * wv) * others
                        if ti.static(need_points):
                            dx[i] += (others * samples[k][1]).sum() * du
                            dx[j] += (others * samples[k][2]).sum() * dv
                    if ti.static(need_points):
                        for a in ti.static(range(dims)):
                            grad_points[n, a] = grad_points[n, a] + dx[a]  # summed over scales

        return backward

    return {
        "forward": forward,
        "forward_saving": forward_saving,
        "backward_by_plane": backward_by_plane,
        ("backward", True, True): make_backward(True, True),
        ("backward", True, False): make_backward(True, False),
        ("backward", False, True): make_backward(False, True),
        ("backward", False, False): make_backward(False, False),
    }


def _kernels(dtype: torch.dtype, dims: int, wrap_time: bool, channels: int, simd: bool):
    """The kernels of one combination; `simd`: the objects compiled (and always launched)
    under `runtime.vector_codegen`, kept apart from the scalar build."""
    key = (runtime.runtime_token(), str(dtype).split(".")[-1], dims, wrap_time, channels, simd)
    if key not in _KERNELS:
        _KERNELS[key] = {name: runtime.fast_kernel(k) for name, k in _build_kernels(*key[1:5]).items()}
    return _KERNELS[key]


PLANES_AT = 4
"""Index of the first plane among `_HexplaneFunction`'s inputs (points, wrap_time, n_scales, static, planes...)."""


def _padded(scale_planes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Six plane arguments: D = 3 passes its 3 planes plus unused placeholders."""
    return list(scale_planes) + [scale_planes[0]] * (6 - len(scale_planes))


class _HexplaneFunction(torch.autograd.Function):
    """Autograd bridge. Inputs: points, wrap_time, n_scales, the static mask (uint8 [N] or
    None), then every plane (channel-last, contiguous), flat."""

    @staticmethod
    def forward(ctx, points, wrap_time, n_scales, static, *planes_flat):
        # Detached views go to Taichi: its launcher sets `.grad = zeros` on any tensor
        # that requires grad (an allocation per call, and the root of taichi#8101).
        points = points.detach()
        planes_flat = [p.detach() for p in planes_flat]
        dims = points.shape[1]
        per_scale = len(planes_flat) // n_scales
        channels = planes_flat[0].shape[2]
        ctx.wrap_time = wrap_time
        ctx.n_scales = n_scales
        ctx.masked = static is not None
        ctx.static = static if static is not None else torch.zeros(1, dtype=torch.uint8, device=points.device)
        if points.shape[0] == 0:
            ctx.save_for_backward(points, *planes_flat)
            ctx.by_plane = False
            return points.new_zeros(0, n_scales * channels)
        runtime.ensure_taichi(points.device)
        ctx.simd = runtime.simd_vectors(channels, planes_flat)  # (outputs and samples: fresh, aligned)
        kern = _kernels(points.dtype, dims, wrap_time, channels, ctx.simd)
        # On the CPU, when only the planes need a gradient (training), keep every plane's
        # sample for a backward that runs one task per plane (see `backward_by_plane`).
        kept_bytes = points.shape[0] * len(planes_flat) * channels * points.element_size()
        ctx.by_plane = (
            PLANE_TASK_BACKWARD and not runtime.is_cuda() and not ctx.needs_input_grad[0]
            and any(ctx.needs_input_grad[PLANES_AT:]) and kept_bytes <= PLANE_TASK_MAX_BYTES
        )
        # [N, S, C] written scale by scale; viewed as [N, S * C] (concatenation over scales)
        out = torch.empty(points.shape[0], n_scales, channels, dtype=points.dtype, device=points.device)
        samples = []
        with runtime.vector_codegen(ctx.simd):
            for s in range(n_scales):
                scale = list(planes_flat[s * per_scale:(s + 1) * per_scale])
                if ctx.by_plane:
                    samples.append(torch.empty(points.shape[0], per_scale, channels, dtype=points.dtype, device=points.device))
                    kern["forward_saving"](points, *_padded(scale), out, samples[-1], s, *_axis_resolutions(dims, scale), ctx.static, int(ctx.masked))
                else:
                    kern["forward"](points, *_padded(scale), out, s, *_axis_resolutions(dims, scale), ctx.static, int(ctx.masked))
        ctx.save_for_backward(points, *planes_flat, *samples)
        return out.view(points.shape[0], n_scales * channels)

    @staticmethod
    def backward(ctx, grad_out):
        n_scales = ctx.n_scales
        saved = [t.detach() for t in ctx.saved_tensors]
        points = saved[0]
        samples = saved[len(saved) - n_scales:] if ctx.by_plane else []
        planes_flat = saved[1 : len(saved) - len(samples)]
        per_scale = len(planes_flat) // n_scales
        dims = points.shape[1]
        channels = planes_flat[0].shape[2]
        need_points = ctx.needs_input_grad[0]
        need_planes = any(ctx.needs_input_grad[PLANES_AT:])
        if not (need_points or need_planes):
            return (None,) * (PLANES_AT + len(planes_flat))
        if points.shape[0] == 0:
            return (
                torch.zeros_like(points) if need_points else None, None, None, None,
                *(torch.zeros_like(p) if need else None for p, need in zip(planes_flat, ctx.needs_input_grad[PLANES_AT:])),
            )
        runtime.ensure_taichi(points.device)
        grad_out = grad_out.detach().contiguous().view(points.shape[0], n_scales, channels)
        # (gradient buffers: fresh, aligned; the samples were allocated by the forward)
        simd = runtime.simd_vectors(channels, [*planes_flat, grad_out])
        with runtime.vector_codegen(simd):
            return _HexplaneFunction._backward(ctx, grad_out, points, planes_flat, samples, _kernels(points.dtype, dims, ctx.wrap_time, channels, simd))

    @staticmethod
    def _backward(ctx, grad_out, points, planes_flat, samples, kern):
        """The backward's launches (inside the caller's codegen context)."""
        n_scales = ctx.n_scales
        per_scale = len(planes_flat) // n_scales
        dims = points.shape[1]
        need_points = ctx.needs_input_grad[0]
        if ctx.by_plane:
            plane_grads = []
            for s in range(n_scales):
                scale = planes_flat[s * per_scale:(s + 1) * per_scale]
                needs = ctx.needs_input_grad[PLANES_AT + s * per_scale : PLANES_AT + (s + 1) * per_scale]
                grads = [torch.empty_like(p) if need else p for p, need in zip(scale, needs)]  # (zeroed by the kernel; a plane that needs none is never written)
                wanted = sum(1 << k for k, need in enumerate(needs) if need)
                with runtime.fixed_cpu_block_dim():  # one task per plane, so planes run in parallel
                    kern["backward_by_plane"](points, samples[s], grad_out, s, *_axis_resolutions(dims, scale), *_padded(grads), wanted,
                                              ctx.static, int(ctx.masked))
                plane_grads.extend(grads)
            plane_grads = [g if need else None for g, need in zip(plane_grads, ctx.needs_input_grad[PLANES_AT:])]
            return (None, None, None, None, *plane_grads)
        private = not runtime.is_cuda()
        n_points = points.shape[0]
        n_chunks = max(1, min(runtime.cpu_threads(), n_points)) if private else n_points
        n_buffers = n_chunks if private else 1
        # (a placeholder when the points need no gradient: the kernel then never touches it)
        grad_points = torch.zeros_like(points) if need_points else points.new_zeros(1, dims)
        plane_grads = []
        backward = kern[("backward", private, need_points)]
        for s in range(n_scales):
            scale = planes_flat[s * per_scale:(s + 1) * per_scale]
            buffers = [
                torch.zeros((n_buffers,) + tuple(p.shape), dtype=p.dtype, device=p.device) for p in scale
            ]
            args = (
                points, *_padded(scale), grad_out, s, *_axis_resolutions(dims, scale),
                *_padded(buffers), grad_points, n_chunks, -(-n_points // n_chunks), ctx.static, int(ctx.masked),
            )
            if private:
                with runtime.fixed_cpu_block_dim():  # one task per chunk, so chunks run in parallel
                    backward(*args)
            else:
                backward(*args)
            plane_grads.extend(b.sum(dim=0) if n_buffers > 1 else b[0] for b in buffers)
        plane_grads = [g if need else None for g, need in zip(plane_grads, ctx.needs_input_grad[PLANES_AT:])]
        return (grad_points if need_points else None, None, None, None, *plane_grads)


def _validate(points: torch.Tensor, planes, wrap_time: bool, channels_last: bool):
    from .reference import _check

    dims = _check(points, planes, wrap_time)
    if not points.is_floating_point() or points.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"points must be float32 or float64, got {points.dtype}")
    channels = None
    for s, scale in enumerate(planes):
        for k, plane in enumerate(scale):
            if plane.dim() != 3:
                raise ValueError(f"plane [{s}][{k}] must be 3D, got shape {tuple(plane.shape)}")
            if plane.dtype != points.dtype or plane.device != points.device:
                raise ValueError(
                    f"plane [{s}][{k}] is {plane.dtype} on {plane.device}; points are "
                    f"{points.dtype} on {points.device}"
                )
            c = plane.shape[2] if channels_last else plane.shape[0]
            if channels is None:
                channels = c
            elif c != channels:
                raise ValueError(f"plane [{s}][{k}] has {c} channels, expected {channels}")
    return dims


def _check_resolutions(dims: int, scale: list[torch.Tensor], s: int):
    """Every plane of a scale must agree on the resolution of each axis (channel-last shapes)."""
    pairs = plane_pairs(dims)
    res: dict[int, int] = {}
    for k, ((i, j), plane) in enumerate(zip(pairs, scale)):
        for axis, size in ((i, plane.shape[1]), (j, plane.shape[0])):
            if res.setdefault(axis, size) != size:
                raise ValueError(
                    f"scale {s}: plane {k} gives axis {axis} {size} samples, another plane {res[axis]}"
                )


def hexplane_features(points: torch.Tensor, planes, *, wrap_time: bool = False, channels_last: bool = False, static=None):
    """Multiscale hex-/tri-plane features (Taichi), [N, D] points -> [N, C * S].

    points: [N, D], D = 3 or 4 (time last), float32 or float64, coordinates in [-1, 1].
    planes: list over scales of lists of planes in combinations(range(D), 2) order;
        [C, H, W] each, or [H, W, C] with channels_last=True (no copy: the fast path).
    wrap_time: the time axis is periodic (t in [-1, 1) covers the F samples as a circle).
    static: None, or bool [N] (4D points): those points read every space-time plane as
        ones, i.e. get the field's static part, in the same launch as the others (no
        gather, no second call; their time coordinate gets no gradient).
    Differentiable w.r.t. points and planes. Same results as `reference.hexplane_features`.
    """
    from .reference import _check_static

    dims = _validate(points, planes, wrap_time, channels_last)
    static = _check_static(static, points)
    if static is not None:
        static = static.to(torch.uint8).contiguous()
    flat = []
    for s, scale in enumerate(planes):
        scale_cl = [p if channels_last else p.permute(1, 2, 0) for p in scale]
        scale_cl = [p.contiguous() for p in scale_cl]
        _check_resolutions(dims, scale_cl, s)
        flat.extend(scale_cl)
    return _HexplaneFunction.apply(points.contiguous(), bool(wrap_time), len(planes), static, *flat)
