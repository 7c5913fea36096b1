"""NeRF volume rendering quadrature in Taichi with a hand-written backward.

`volume_render(sigmas [R, S], colors [R, S, C], deltas [R, S]) -> (color [R, C],
weights [R, S])`, the Taichi twin of `loopnerf.kernels.reference.volume_render`:
tau_s = sigma_s delta_s, alpha_s = 1 - exp(-tau_s), T_s = exp(-sum_{k<s} tau_k) (T_0 = 1),
weight_s = T_s alpha_s, color = sum_s weight_s colors_s.

Backward (by hand; Taichi's autodiff gets loop-carried transmittance wrong, DESIGN.md
section 8). With e_s = dL/dweight_s + sum_c dL/dcolor_c colors_{s,c} (the total effect of
weight_s on the loss):
    dL/dcolors_{s,c} = dL/dcolor_c * weight_s
    dL/dtau_s       = e_s T_{s+1} - sum_{k>s} e_k weight_k
(a weight depends on its own tau through alpha and on every earlier tau through T), so
one reverse pass per ray with a running suffix sum; dL/dsigma = dL/dtau delta and
dL/ddelta = dL/dtau sigma. The forward keeps T_s for it, so no subtraction of
cumulative sums (which would cancel catastrophically in float32) is needed.
"""
import torch

from . import runtime

_KERNELS: dict = {}


def _build_kernels(real_name: str, channels: int):
    """Kernels for one (dtype, C): colours are compile-time `ti.Vector`s of C channels, so
    the running colour of a ray stays in registers instead of memory."""
    ti = runtime._taichi()
    real = ti.f64 if real_name == "float64" else ti.f32
    vec = ti.types.vector(channels, real)
    per_sample = ti.types.ndarray(dtype=real, ndim=2)  # [R, S]
    sample_colors = ti.types.ndarray(dtype=vec, ndim=2)  # [R, S] of C
    ray_colors = ti.types.ndarray(dtype=vec, ndim=1)  # [R] of C

    @ti.kernel
    def forward(
        sigmas: per_sample, colors: sample_colors, deltas: per_sample,
        color: ray_colors, weights: per_sample, transmittance: per_sample, survive: per_sample,
    ):
        n_samples = sigmas.shape[1]
        for r in range(sigmas.shape[0]):  # parallel over rays; serial along each ray
            acc = vec(0.0)
            trans = ti.cast(1.0, real)
            for s in range(n_samples):
                keep = ti.exp(-sigmas[r, s] * deltas[r, s])  # 1 - alpha
                w = trans * (1.0 - keep)
                weights[r, s] = w
                transmittance[r, s] = trans
                survive[r, s] = keep  # kept for the backward, which then needs no exp
                acc += w * colors[r, s]
                trans *= keep
            color[r] = acc

    @ti.kernel
    def backward(
        sigmas: per_sample, colors: sample_colors, deltas: per_sample, survive: per_sample,
        weights: per_sample, transmittance: per_sample,
        grad_color: ray_colors, grad_weights: per_sample,
        grad_sigmas: per_sample, grad_colors: sample_colors, grad_deltas: per_sample,
    ):
        n_samples = sigmas.shape[1]
        for r in range(sigmas.shape[0]):
            g_color = grad_color[r]
            suffix = ti.cast(0.0, real)  # sum_{k>s} e_k weight_k
            for i in range(n_samples):
                s = n_samples - 1 - i
                w = weights[r, s]
                effect = grad_weights[r, s] + g_color.dot(colors[r, s])
                grad_colors[r, s] = g_color * w
                d_tau = effect * transmittance[r, s] * survive[r, s] - suffix
                suffix += effect * w
                grad_sigmas[r, s] = d_tau * deltas[r, s]
                grad_deltas[r, s] = d_tau * sigmas[r, s]

    return forward, backward


def _kernels(dtype: torch.dtype, channels: int):
    key = (runtime.runtime_token(), str(dtype).split(".")[-1], channels)
    if key not in _KERNELS:
        _KERNELS[key] = tuple(runtime.fast_kernel(k) for k in _build_kernels(key[1], channels))
    return _KERNELS[key]


class _VolumeRenderFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, colors, deltas):
        # Detached views go to Taichi: its launcher sets `.grad = zeros` on any tensor
        # that requires grad (an allocation per call, and the root of taichi#8101).
        sigmas, colors, deltas = sigmas.detach(), colors.detach(), deltas.detach()
        runtime.ensure_taichi(sigmas.device)
        forward, _ = _kernels(sigmas.dtype, colors.shape[2])
        rays, samples = sigmas.shape
        # No torch arithmetic here: on a busy CPU every parallel torch op risks a stall of
        # its thread pool, and the whole quadrature is cheaper than one such op.
        color = torch.empty(rays, colors.shape[2], dtype=sigmas.dtype, device=sigmas.device)
        weights = torch.empty(rays, samples, dtype=sigmas.dtype, device=sigmas.device)
        transmittance = torch.empty_like(weights)
        survive = torch.empty_like(weights)
        if rays > 0 and samples > 0:
            forward(sigmas, colors, deltas, color, weights, transmittance, survive)
        else:
            color.zero_()
        ctx.save_for_backward(sigmas, colors, deltas, survive, weights, transmittance)
        return color, weights

    @staticmethod
    def backward(ctx, grad_color, grad_weights):
        sigmas, colors, deltas, survive, weights, transmittance = (t.detach() for t in ctx.saved_tensors)
        if grad_color is None:
            grad_color = torch.zeros(sigmas.shape[0], colors.shape[2], dtype=sigmas.dtype, device=sigmas.device)
        if grad_weights is None:
            grad_weights = torch.zeros_like(sigmas)
        # fresh buffers: never hand back a tensor's own .grad (taichi#8101)
        grad_sigmas = torch.empty_like(sigmas)
        grad_colors = torch.empty_like(colors)
        grad_deltas = torch.empty_like(deltas)
        if sigmas.numel() > 0:
            runtime.ensure_taichi(sigmas.device)
            _, backward = _kernels(sigmas.dtype, colors.shape[2])
            backward(
                sigmas, colors, deltas, survive, weights, transmittance,
                grad_color.detach().contiguous(), grad_weights.detach().contiguous(),
                grad_sigmas, grad_colors, grad_deltas,
            )
        return (
            grad_sigmas if ctx.needs_input_grad[0] else None,
            grad_colors if ctx.needs_input_grad[1] else None,
            grad_deltas if ctx.needs_input_grad[2] else None,
        )


def volume_render(sigmas: torch.Tensor, colors: torch.Tensor, deltas: torch.Tensor):
    """NeRF quadrature (Taichi): (sigmas [R, S] >= 0, colors [R, S, C], deltas [R, S]) -> (color [R, C], weights [R, S]).

    float32 or float64, all three on one device. Differentiable w.r.t. all inputs;
    matches `reference.volume_render`.
    """
    if sigmas.dim() != 2 or deltas.shape != sigmas.shape or colors.dim() != 3 or colors.shape[:2] != sigmas.shape:
        raise ValueError(
            f"expected sigmas [R, S], colors [R, S, C], deltas [R, S]; got "
            f"{tuple(sigmas.shape)}, {tuple(colors.shape)}, {tuple(deltas.shape)}"
        )
    if sigmas.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"volume_render needs float32 or float64, got {sigmas.dtype}")
    for name, t in (("colors", colors), ("deltas", deltas)):
        if t.dtype != sigmas.dtype or t.device != sigmas.device:
            raise ValueError(f"{name} is {t.dtype} on {t.device}; sigmas are {sigmas.dtype} on {sigmas.device}")
    return _VolumeRenderFunction.apply(sigmas.contiguous(), colors.contiguous(), deltas.contiguous())
