"""Lazy Taichi start-up for the kernels: `ti.init` on first use, never at import.

`ensure_taichi(device)` initialises Taichi once with the arch that matches the torch
tensors (CUDA tensors -> Taichi CUDA, everything else -> Taichi CPU), the offline cache
on (so a second process does not pay the kernel compile time again) and the default
float type left at float32 (the kernels are typed per call, float32 and float64).

If Taichi was already initialised by someone else in the process (the viewer, say) with
the right arch, that runtime is reused as is. Kernels are compiled per Taichi runtime:
`runtime_token()` changes whenever the runtime is replaced, so kernel caches keyed on it
rebuild themselves.
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def _taichi():
    import taichi as ti  # heavy import (and a banner line): only when a kernel runs

    return ti


def _current_arch_name() -> str | None:
    """The arch of the live Taichi runtime, or None when Taichi is not initialised."""
    ti = _taichi()
    from taichi.lang import impl

    prog = impl.get_runtime().prog
    if prog is None:
        return None
    global _ARCH
    # asked a few dozen times a training step (every kernel call): the config's arch is
    # read once per Taichi program (the cache holds the program, so its id is not reused)
    if _ARCH is None or _ARCH[0] is not prog:
        _ARCH = (prog, str(prog.config().arch).split(".")[-1])
    return _ARCH[1]


_ARCH = None


def ensure_taichi(device) -> "object":
    """Initialise Taichi for tensors on `device` (a torch.device) if needed; returns the `taichi` module."""
    ti = _taichi()
    want_cuda = getattr(device, "type", str(device)) == "cuda"
    with _lock:
        arch = _current_arch_name()
        if arch is not None and (arch == "cuda") == want_cuda:
            return ti
        kwargs = dict(
            arch=ti.cuda if want_cuda else ti.cpu,
            offline_cache=True,
            default_fp=ti.f32,
            log_level=ti.WARN,
        )
        cache_dir = os.environ.get("LOOPNERF_TAICHI_CACHE")
        if cache_dir:
            kwargs["offline_cache_file_path"] = cache_dir
        threads = os.environ.get("LOOPNERF_CPU_THREADS")
        if threads and not want_cuda:
            kwargs["cpu_max_num_threads"] = int(threads)
        ti.init(**kwargs)
    return ti


def cuda_available() -> bool:
    """True when an NVIDIA driver is visible (checked without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidia0")


def ensure_taichi_arch(arch: str | None = None) -> str:
    """Start Taichi for a renderer that owns no torch tensors (the viewer); returns the
    arch it runs on ("cuda" or "x64", ...).

    arch: "cuda", "cpu" or None (CUDA when a GPU is there, else CPU; the environment
    variable LOOPNERF_ARCH may choose). A runtime already started in this process is
    reused as it is: a second `ti.init` would throw away every other part's data.
    """
    ti = _taichi()
    with _lock:
        current = _current_arch_name()
        if current is not None:
            return current
        want = (arch or os.environ.get("LOOPNERF_ARCH", "")).lower() or None
        kwargs = dict(offline_cache=True, log_level=ti.WARN, default_fp=ti.f32)
        cache_dir = os.environ.get("LOOPNERF_TAICHI_CACHE")
        if cache_dir:
            kwargs["offline_cache_file_path"] = cache_dir
        if want in (None, "cuda", "gpu") and (want is not None or cuda_available()):
            try:
                ti.init(arch=ti.cuda, **kwargs)
                return _current_arch_name()
            except Exception:  # no usable CUDA runtime: fall back to the CPU below
                if want is not None:
                    raise
        threads = os.environ.get("LOOPNERF_CPU_THREADS")
        if threads:
            kwargs["cpu_max_num_threads"] = int(threads)
        ti.init(arch=ti.cpu, **kwargs)
        return _current_arch_name()


def runtime_token() -> int:
    """An id of the live Taichi runtime; compiled-kernel caches key on it."""
    from taichi.lang import impl

    return id(impl.get_runtime().prog)


def is_cuda() -> bool:
    return _current_arch_name() == "cuda"


def cpu_threads() -> int:
    """Threads Taichi's CPU backend uses (its per-thread gradient buffers are this many)."""
    ti = _taichi()
    from taichi.lang import impl

    prog = impl.get_runtime().prog
    if prog is not None:
        try:
            return max(1, int(prog.config().cpu_max_num_threads))
        except AttributeError:
            pass
    return max(1, os.cpu_count() or 1)


class fixed_cpu_block_dim:
    """Context: compile the kernels launched inside with the CPU loops' own `block_dim`.

    Taichi 1.7.4's CPU codegen ignores `ti.loop_config(block_dim=...)` while the global
    `cpu_block_dim_adaptive` flag is on (it then makes every task at least 512
    iterations long, so a loop over a few per-thread chunks runs on one thread). The
    flag is read when a kernel is compiled, i.e. on its first launch; it is switched off
    around the launch and restored afterwards, so other kernels keep Taichi's default.
    """

    def __enter__(self):
        from taichi.lang import impl

        self._config = impl.get_runtime().prog.config()
        self._old = self._config.cpu_block_dim_adaptive
        self._config.cpu_block_dim_adaptive = False
        return self

    def __exit__(self, *exc):
        self._config.cpu_block_dim_adaptive = self._old
        return False



SIMD_ALIGN_BYTES = 64
"""torch's CPU allocator aligns every allocation to 64 bytes; a vector of B bytes kept
whole by `vector_codegen` must start on a multiple of min(B, 64) (an AVX-512 register)."""

SIMD = True
"""Compile the CPU kernels that allow it with their channel vectors kept whole
(`vector_codegen`, `simd_vectors`). False: every kernel scalarized, as before
(`benchmarks/` time both builds side by side)."""


def simd_vectors(channels: int, tensors) -> bool:
    """True when a kernel over ndarrays of `channels`-vectors may run its SIMD build here:
    the CPU, a power-of-two channel count (other counts crash Taichi's unscalarized
    codegen) and every tensor's data aligned to its vector (a misaligned one faults: a
    plane that is a view at an odd offset into a bigger buffer takes the scalar build)."""
    if not SIMD or is_cuda() or channels < 1 or channels & (channels - 1):
        return False
    for t in tensors:
        need = min(channels * t.element_size(), SIMD_ALIGN_BYTES)
        if t.data_ptr() % need:
            return False
    return True


class vector_codegen:
    """Context: compile the kernels first launched inside with Taichi's vectors kept whole.

    Taichi 1.7.4 scalarizes every `ti.Vector` into its components before LLVM sees it
    (`real_matrix_scalarize`, on by default), and LLVM's vectorizers do not put them
    back together: a 16-channel plane cell becomes 16 scalar loads and 16 scalar
    multiply-adds. With the flag off a vector stays an LLVM vector (`<16 x float>`),
    i.e. SIMD registers: a chain of multiply-adds on 16-channel vectors runs 7.5x faster
    on this machine's CPU (AVX-512). The flag is read when a kernel is compiled (its
    first launch), and the unscalarized path is not safe for every kernel, so it is
    switched off only around the launches of a kernel object kept apart for its SIMD
    build (compiled and launched only there), and restored afterwards; Taichi's offline
    cache keys kernels on the flag. What crashes it (Taichi 1.7.4, found the hard way;
    a kernel that takes this build must avoid all of them, and its twin test runs it):
    channel counts that are not powers of two and vectors not aligned to min(bytes,
    64) (segfaults; `simd_vectors` checks both), 3-vector ndarrays (unaligned), `v -= w`
    on vectors (write `v = v - w`), `ti.abs` / `ti.max` and casts of comparisons on
    whole vectors (go component by component), atomic adds of whole vectors (keep the
    private-buffer paths), and the volume-render kernels (left scalar).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:
            from taichi.lang import impl

            self._config = impl.get_runtime().prog.config()
            self._old = self._config.real_matrix_scalarize
            self._config.real_matrix_scalarize = False
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._config.real_matrix_scalarize = self._old
        return False


FAST_LAUNCH = True
"""Launch the kernels wrapped by `fast_kernel` through their cached plans; False: every
launch through Taichi's general path (`benchmarks/train_step.py` times both)."""


class FastKernel:
    """A `@ti.kernel` launched with a few Python steps instead of Taichi's general path.

    Taichi 1.7.4 spends 15-75 us of Python per launch and 11-45 us per ndarray argument
    (type extraction for its template lookup, `np.iinfo`, environment reads, device
    strings; the range is this VM's speed from hour to hour) before the kernel runs: up
    to 10-13 ms of a `cpu`-preset training step's 22 launches and ~300 arguments (an
    empty 9-argument kernel: 240 us a launch that way, 56 us with the plan). Here the
    first call with a new argument signature goes through Taichi as usual (compiling,
    checking every argument) and leaves a plan, the compiled kernel; later calls with
    the same signature (per tensor: dtype, ndim, element shape; per template argument
    its value; per scalar its Python type) only set the arguments, each as its
    annotation says (`_arg_kinds`), and launch.

    Anything the plan does not cover goes the general way: keyword arguments, tensors
    that require grad (Taichi allocates their `.grad`), non-contiguous tensors (Taichi
    raises its own error), tensors on another device than the kernel's (Taichi copies
    them), numpy arrays, Taichi fields, kernels with a return value or a print,
    autodiff tapes. A replaced Taichi runtime drops the plans.
    """

    def __init__(self, fn):
        self.fn = fn
        self.primal = fn._primal
        self.plans: dict = {}
        self.token = None
        self.general = self.primal.return_type is not None
        self._kinds = None

    def _arg_kinds(self):
        """Per argument: 'template', ('array', element_dim), ('float',) / ('int', signed)."""
        if self._kinds is None:
            from taichi.lang.util import cook_dtype
            from taichi.types import ndarray_type, primitive_types, template
            from taichi.types.utils import is_signed

            kinds = []
            for arg in self.primal.arguments:
                anno = arg.annotation
                if isinstance(anno, template):
                    kinds.append(("template",))
                elif isinstance(anno, ndarray_type.NdarrayType):
                    dt = anno.dtype
                    edim = 0 if dt is None or id(dt) in primitive_types.type_ids else dt.ndim
                    kinds.append(("array", edim))
                elif id(anno) in primitive_types.real_type_ids:
                    kinds.append(("float",))
                elif id(anno) in primitive_types.integer_type_ids:
                    kinds.append(("int", is_signed(cook_dtype(anno))))
                else:
                    kinds.append(("other",))
            self._kinds = kinds
        return self._kinds

    def _signature(self, args, on_cuda: bool):
        import torch

        sig = []
        for a, kind in zip(args, self._arg_kinds()):
            k = kind[0]
            if k == "array":
                # (a tensor on another device than the kernel's: Taichi copies it there and back)
                if type(a) is not torch.Tensor or a.requires_grad or a.is_cuda != on_cuda or not a.is_contiguous():
                    return None
                shape = a.shape
                sig.append((a.dtype, len(shape), tuple(shape[len(shape) - kind[1]:])))
            elif k == "template":
                sig.append(a)
            elif k in ("float", "int"):
                sig.append(type(a))
            else:
                return None
        return tuple(sig)

    def __call__(self, *args, **kwargs):
        from taichi.lang import impl

        rt = impl.get_runtime()
        if not FAST_LAUNCH or kwargs or self.general or rt.target_tape or rt.fwd_mode_manager or len(args) != len(self.primal.arguments):
            return self.fn(*args, **kwargs)
        token = id(rt.prog)
        if token != self.token:
            self.plans.clear()
            self.token = token
        try:
            sig = self._signature(args, is_cuda())
            hash(sig)
        except TypeError:  # an unhashable template argument
            sig = None
        if sig is None:
            return self.fn(*args)
        plan = self.plans.get(sig)
        if plan is None:
            out = self.fn(*args)  # compiles and checks every argument
            if self.primal.has_print:  # (known once compiled) a print needs Taichi's sync
                self.general = True
                return out
            key = self.primal.ensure_compiled(*args)
            t_kernel = self.primal.compiled_kernels[key]
            prog = rt.prog
            self.plans[sig] = (t_kernel, prog.compile_kernel(prog.config(), prog.get_device_caps(), t_kernel))
            return out
        t_kernel, compiled = plan
        ctx = t_kernel.make_launch_context()
        slot = 0
        for a, kind in zip(args, self._kinds):
            k = kind[0]
            if k == "template":
                continue
            if k == "array":
                shape = a.shape
                edim = kind[1]
                ctx.set_arg_external_array_with_shape((slot,), a.data_ptr(), a.element_size() * a.numel(),
                                                      list(shape[:len(shape) - edim] if edim else shape), 0)
            elif k == "float":
                ctx.set_arg_float((slot,), float(a))
            elif kind[1]:
                ctx.set_arg_int((slot,), int(a))
            else:
                ctx.set_arg_uint((slot,), int(a))
            slot += 1
        rt.prog.launch_kernel(compiled, ctx)
        return None


def fast_kernel(fn):
    """`FastKernel(fn)` for a `@ti.kernel` function (see there)."""
    return FastKernel(fn)
