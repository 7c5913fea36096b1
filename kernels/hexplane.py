"""Multiscale hex-/tri-plane interpolation in Taichi, differentiable from PyTorch.

`hexplane_features(points, planes, *, wrap_time=False, channels_last=False)` is the
Taichi twin of `loopnerf.kernels.reference.hexplane_features` (same conventions, see its
module docstring): points [N, D] (D = 3 or 4) in [-1, 1] -> features [N, C * S], the
product over a scale's planes of bilinear samples (align_corners=True, border clamp),
concatenated over scales; `wrap_time=True` makes the time axis periodic.

Implementation notes (DESIGN.md section 8):

* One kernel launch per scale, parallel over points; planes are read channel-last
  ([H, W, C]) with a plain `for c in range(C)` loop (contiguous, vectorisable); only the
  planes (<= 6) and their 4 corners are unrolled. Channel-first planes are permuted to
  channel-last once per call (and their gradients permuted back).
* Backward recomputes the bilinear samples (nothing but the inputs is saved) and
  scatters plane gradients. On the CPU each of a few point chunks (one per thread)
  scatters into its own private gradient buffer with plain read-add-write (float
  atomics compile to compare-and-swap loops there); the buffers are summed afterwards.
  On CUDA, where atomics are cheap, one buffer and `atomic_add`.
* Gradients are returned in fresh buffers (never a tensor's own `.grad`: taichi#8101).
"""

import warnings

import torch

from . import runtime
from .reference import plane_pairs

# The kernels build small Python lists of Taichi values while they are compiled (an
# unrolled loop over the planes); Taichi warns about the `.append` calls, harmlessly.
warnings.filterwarnings(
    "ignore", message=r".*Calling non-taichi function \"(cells|vals|dus|dvs)\.append\"", category=SyntaxWarning
)

_KERNELS: dict = {}


def _axis_sources(dims: int) -> list[tuple[int, int]]:
    """For each coordinate axis: (plane index, shape dim) whose size is that axis' resolution."""
    pairs = plane_pairs(dims)
    sources = []
    for axis in range(dims):
        for k, (i, j) in enumerate(pairs):
            if axis == i:
                sources.append((k, 1))  # coordinate i indexes W = shape[1] (channel-last)
                break
            if axis == j:
                sources.append((k, 0))  # coordinate j indexes H = shape[0]
                break
    return sources


def _build_kernels(real_name: str, dims: int, wrap_time: bool):
    """Compile-on-first-call Taichi kernels for one (dtype, D, wrap_time) combination."""
    ti = runtime._taichi()
    real = ti.f64 if real_name == "float64" else ti.f32
    pairs = plane_pairs(dims)
    n_planes = len(pairs)
    sources = _axis_sources(dims)
    nd = ti.types.ndarray()

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
    def locate_all(points: ti.template(), n, planes: ti.template()):
        """Per axis (static list) the located cell of point n."""
        cells = []
        for a in ti.static(range(dims)):
            k, d = ti.static(sources[a])
            res = planes[k].shape[d]
            cells.append(locate(ti.cast(points[n, a], real), res, ti.static(wrap_time and a == 3)))
        return cells

    @ti.kernel
    def forward(points: nd, p0: nd, p1: nd, p2: nd, p3: nd, p4: nd, p5: nd, out: nd, col0: ti.i32):
        planes = ti.static((p0, p1, p2, p3, p4, p5))
        channels = p0.shape[2]
        for n in range(points.shape[0]):
            cells = locate_all(points, n, planes)
            for c in range(channels):
                value = ti.cast(1.0, real)
                for k in ti.static(range(n_planes)):
                    i, j = ti.static(pairs[k])
                    u0, u1, wu, _du = cells[i]
                    v0, v1, wv, _dv = cells[j]
                    plane = ti.static(planes[k])
                    lo = plane[v0, u0, c] + wu * (plane[v0, u1, c] - plane[v0, u0, c])
                    hi = plane[v1, u0, c] + wu * (plane[v1, u1, c] - plane[v1, u0, c])
                    value *= lo + wv * (hi - lo)
                out[n, col0 + c] = value

    def make_backward(private: bool, need_points: bool):
        @ti.kernel
        def backward(
            points: nd, p0: nd, p1: nd, p2: nd, p3: nd, p4: nd, p5: nd,
            grad_out: nd, col0: ti.i32,
            g0: nd, g1: nd, g2: nd, g3: nd, g4: nd, g5: nd,
            grad_points: nd, n_chunks: ti.i32,
        ):
            planes = ti.static((p0, p1, p2, p3, p4, p5))
            grads = ti.static((g0, g1, g2, g3, g4, g5))
            channels = p0.shape[2]
            n_points = points.shape[0]
            if ti.static(private):
                # a few chunks, one per thread; block_dim=1 so that each chunk is its own task
                ti.loop_config(block_dim=1)
            for chunk in range(n_chunks):
                start = chunk
                stop = chunk + 1
                buf = 0
                if ti.static(private):
                    start = ti.cast(ti.cast(chunk, ti.i64) * n_points // n_chunks, ti.i32)
                    stop = ti.cast(ti.cast(chunk + 1, ti.i64) * n_points // n_chunks, ti.i32)
                    buf = chunk
                for n in range(start, stop):  # serial inside a chunk
                    cells = locate_all(points, n, planes)
                    dx = [ti.cast(0.0, real) for _ in ti.static(range(dims))]
                    for c in range(channels):
                        g = ti.cast(grad_out[n, col0 + c], real)
                        vals = []
                        dus = []
                        dvs = []
                        for k in ti.static(range(n_planes)):
                            i, j = ti.static(pairs[k])
                            u0, u1, wu, _du = cells[i]
                            v0, v1, wv, _dv = cells[j]
                            plane = ti.static(planes[k])
                            a00 = plane[v0, u0, c]
                            a01 = plane[v0, u1, c]
                            a10 = plane[v1, u0, c]
                            a11 = plane[v1, u1, c]
                            lo = a00 + wu * (a01 - a00)
                            hi = a10 + wu * (a11 - a10)
                            vals.append(lo + wv * (hi - lo))
                            if ti.static(need_points):
                                dus.append((a01 - a00) + wv * ((a11 - a10) - (a01 - a00)))
                                dvs.append(hi - lo)
                        for k in ti.static(range(n_planes)):
                            i, j = ti.static(pairs[k])
                            u0, u1, wu, du = cells[i]
                            v0, v1, wv, dv = cells[j]
                            others = g
                            for m in ti.static(range(n_planes)):
                                if ti.static(m != k):
                                    others *= vals[m]
                            gp = ti.static(grads[k])
                            w00 = (1.0 - wu) * (1.0 - wv) * others
                            w01 = wu * (1.0 - wv) * others
                            w10 = (1.0 - wu) * wv * others
                            w11 = wu * wv * others
                            if ti.static(private):
                                gp[buf, v0, u0, c] = gp[buf, v0, u0, c] + w00
                                gp[buf, v0, u1, c] = gp[buf, v0, u1, c] + w01
                                gp[buf, v1, u0, c] = gp[buf, v1, u0, c] + w10
                                gp[buf, v1, u1, c] = gp[buf, v1, u1, c] + w11
                            else:
                                ti.atomic_add(gp[0, v0, u0, c], w00)
                                ti.atomic_add(gp[0, v0, u1, c], w01)
                                ti.atomic_add(gp[0, v1, u0, c], w10)
                                ti.atomic_add(gp[0, v1, u1, c], w11)
                            if ti.static(need_points):
                                dx[i] += others * dus[k] * du
                                dx[j] += others * dvs[k] * dv
                    if ti.static(need_points):
                        for a in ti.static(range(dims)):
                            grad_points[n, a] = grad_points[n, a] + dx[a]

        return backward

    return {
        "forward": forward,
        ("backward", True, True): make_backward(True, True),
        ("backward", True, False): make_backward(True, False),
        ("backward", False, True): make_backward(False, True),
        ("backward", False, False): make_backward(False, False),
    }


def _kernels(dtype: torch.dtype, dims: int, wrap_time: bool):
    key = (runtime.runtime_token(), str(dtype).split(".")[-1], dims, wrap_time)
    if key not in _KERNELS:
        _KERNELS[key] = _build_kernels(key[1], dims, wrap_time)
    return _KERNELS[key]


def _padded(scale_planes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Six plane arguments: D = 3 passes its 3 planes plus unused placeholders."""
    return list(scale_planes) + [scale_planes[0]] * (6 - len(scale_planes))


class _HexplaneFunction(torch.autograd.Function):
    """Autograd bridge. Inputs: points, then every plane (channel-last, contiguous), flat."""

    @staticmethod
    def forward(ctx, points, wrap_time, n_scales, *planes_flat):
        # Detached views go to Taichi: its launcher sets `.grad = zeros` on any tensor
        # that requires grad (an allocation per call, and the root of taichi#8101).
        points = points.detach()
        planes_flat = [p.detach() for p in planes_flat]
        dims = points.shape[1]
        per_scale = len(planes_flat) // n_scales
        runtime.ensure_taichi(points.device)
        kern = _kernels(points.dtype, dims, wrap_time)
        channels = planes_flat[0].shape[2]
        out = torch.empty(points.shape[0], channels * n_scales, dtype=points.dtype, device=points.device)
        for s in range(n_scales):
            scale = list(planes_flat[s * per_scale:(s + 1) * per_scale])
            kern["forward"](points, *_padded(scale), out, s * channels)
        ctx.wrap_time = wrap_time
        ctx.n_scales = n_scales
        ctx.save_for_backward(points, *planes_flat)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        points, *planes_flat = (t.detach() for t in ctx.saved_tensors)
        n_scales = ctx.n_scales
        per_scale = len(planes_flat) // n_scales
        dims = points.shape[1]
        channels = planes_flat[0].shape[2]
        need_points = ctx.needs_input_grad[0]
        need_planes = any(ctx.needs_input_grad[3:])
        if not (need_points or need_planes):
            return (None,) * (3 + len(planes_flat))
        runtime.ensure_taichi(points.device)
        kern = _kernels(points.dtype, dims, ctx.wrap_time)
        grad_out = grad_out.detach().contiguous()
        private = not runtime.is_cuda()
        n_points = points.shape[0]
        n_chunks = max(1, min(runtime.cpu_threads(), n_points)) if private else n_points
        n_buffers = n_chunks if private else 1
        grad_points = torch.zeros_like(points)
        plane_grads = []
        backward = kern[("backward", private, need_points)]
        for s in range(n_scales):
            scale = planes_flat[s * per_scale:(s + 1) * per_scale]
            buffers = [
                torch.zeros((n_buffers,) + tuple(p.shape), dtype=p.dtype, device=p.device) for p in scale
            ]
            backward(
                points, *_padded(scale), grad_out, s * channels,
                *_padded(buffers), grad_points, n_chunks,
            )
            plane_grads.extend(b.sum(dim=0) if n_buffers > 1 else b[0] for b in buffers)
        plane_grads = [g if need else None for g, need in zip(plane_grads, ctx.needs_input_grad[3:])]
        return (grad_points if need_points else None, None, None, *plane_grads)


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


def hexplane_features(points: torch.Tensor, planes, *, wrap_time: bool = False, channels_last: bool = False):
    """Multiscale hex-/tri-plane features (Taichi), [N, D] points -> [N, C * S].

    points: [N, D], D = 3 or 4 (time last), float32 or float64, coordinates in [-1, 1].
    planes: list over scales of lists of planes in combinations(range(D), 2) order;
        [C, H, W] each, or [H, W, C] with channels_last=True (no copy: the fast path).
    wrap_time: the time axis is periodic (t in [-1, 1) covers the F samples as a circle).
    Differentiable w.r.t. points and planes. Same results as `reference.hexplane_features`.
    """
    dims = _validate(points, planes, wrap_time, channels_last)
    flat = []
    for s, scale in enumerate(planes):
        scale_cl = [p if channels_last else p.permute(1, 2, 0) for p in scale]
        scale_cl = [p.contiguous() for p in scale_cl]
        _check_resolutions(dims, scale_cl, s)
        flat.extend(scale_cl)
    return _HexplaneFunction.apply(points.contiguous(), bool(wrap_time), len(planes), *flat)
