"""The cached launch plan of `kernels.runtime.FastKernel` against Taichi's general path,
and the heap setting of `kernels.host_memory`."""
import pytest
import torch

from loopnerf.kernels import host_memory, runtime


def _kernels():
    ti = runtime.ensure_taichi(torch.device("cpu"))
    vec = ti.types.vector(4, ti.f32)

    @ti.kernel
    def axpy(x: ti.types.ndarray(dtype=vec, ndim=2), y: ti.types.ndarray(dtype=vec, ndim=2),
             a: ti.f32, shift: ti.i32, flag: ti.u8, k: ti.template()):
        for i, j in ti.ndrange(x.shape[0], x.shape[1]):
            y[i, j] = a * x[i, j] + shift + k * ti.cast(flag, ti.f32)

    @ti.kernel
    def total(x: ti.types.ndarray(dtype=ti.f64, ndim=1)) -> ti.f64:
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i]
        return s

    return axpy, total


def _axpy_want(x, a, shift, flag, k):
    return a * x + shift + k * flag


def test_plan_matches_general_path_over_new_shapes_and_values():
    axpy, _ = _kernels()
    fast = runtime.fast_kernel(axpy)
    gen = torch.Generator().manual_seed(0)
    for shape, a, shift, flag, k in [((3, 5), 0.5, 2, 1, 3), ((3, 5), -1.5, -4, 0, 3), ((7, 2), 2.0, 7, 1, 3), ((7, 2), 2.0, 7, 1, 5)]:
        x = torch.randn(*shape, 4, generator=gen)
        y = torch.full_like(x, float("nan"))
        fast(x, y, a, shift, flag, k)
        torch.testing.assert_close(y, _axpy_want(x, a, shift, flag, k))
    # one plan per signature: the template value is part of it, shapes and scalar values are not
    assert len(fast.plans) == 2


def test_general_path_when_the_plan_does_not_apply():
    axpy, total = _kernels()
    fast = runtime.fast_kernel(axpy)
    x = torch.randn(4, 6, 4)
    y = torch.zeros_like(x)
    fast(x, y, 1.0, 0, 0, 1)
    # a non-contiguous tensor: Taichi's own error, not a wrong result
    with pytest.raises(ValueError, match="contiguous"):
        fast(x.transpose(0, 1), torch.zeros(6, 4, 4), 1.0, 0, 0, 1)
    # keyword arguments and tensors that require grad go the general way and still work
    xr = x.clone().requires_grad_(True)
    y2 = torch.zeros_like(x)
    fast(xr, y2, 2.0, 1, 0, k=1)
    torch.testing.assert_close(y2, 2.0 * x + 1)
    # a kernel with a return value always takes Taichi's path
    fast_total = runtime.fast_kernel(total)
    v = torch.arange(10, dtype=torch.float64)
    assert fast_total(v) == pytest.approx(45.0)
    assert fast_total(v) == pytest.approx(45.0)
    assert not fast_total.plans


def test_fast_launch_switch(monkeypatch):
    axpy, _ = _kernels()
    fast = runtime.fast_kernel(axpy)
    monkeypatch.setattr(runtime, "FAST_LAUNCH", False)
    x = torch.randn(2, 3, 4)
    y = torch.zeros_like(x)
    fast(x, y, 3.0, 0, 1, 2)
    fast(x, y, 3.0, 0, 1, 2)
    torch.testing.assert_close(y, 3.0 * x + 2)
    assert not fast.plans


def test_keep_freed_memory(monkeypatch):
    import sys

    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.setenv("LOOPNERF_KEEP_HEAP", "0")
    assert host_memory.keep_freed_memory() is False
    assert host_memory.keep_freed_memory() is False  # decided once per process
    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.delenv("LOOPNERF_KEEP_HEAP")
    applied = host_memory.keep_freed_memory()
    if sys.platform.startswith("linux"):
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert applied is True
    # the heap serves (and keeps) what the trainers allocate every step
    for _ in range(3):
        assert float(torch.zeros(4 << 20).sum()) == 0.0
