"""Speed of the Taichi kernels against their plain-PyTorch twins, one JSON line per figure.

    .venv/bin/python benchmarks/kernels.py [--sizes cpu paper] [--repeats 5] [--device cpu] [--threads N]

Figures (each the median of `--repeats` timed runs after a warm-up, Taichi and
reference interleaved in one process so that a busy machine slows both alike):

* `hexplane`: points/s of `hexplane_features(points [N, 4], planes, channels_last=True)`
  forward, and forward + backward (gradients w.r.t. the planes, as in training), for
  uniform random points (`layout: uniform`, the cache-unfriendly worst case) and for
  points ordered along rays (`layout: rays`, as a renderer produces them).
* `volume_render`: rays/s of `volume_render(sigmas [R, S], colors [R, S, 3], deltas)`.
* `compile`: seconds of the first call (forward + backward of both kernels, float32)
  in a fresh process with an empty Taichi offline cache (`cold`) and again with the cache
  that run left (`warm`), minus the steady-state call time.

Sizes: `cpu` = the `cpu` preset (C = 16, space 48 x {1, 2, 4}, time 24, 2^17 points;
4096 rays x 48 samples); `paper` = K-Planes (C = 32, space 64 x {1, 2, 4}, time 25,
2^18 points; 4096 rays x 48 samples).
"""
import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

SIZES = {
    "cpu": dict(channels=16, space=48, scales=(1, 2, 4), time=24, points=2**17, rays=4096, samples=48),
    "paper": dict(channels=32, space=64, scales=(1, 2, 4), time=25, points=2**18, rays=4096, samples=48),
}


def make_planes(size, device):
    gen = torch.Generator().manual_seed(0)
    planes = []
    for m in size["scales"]:
        r = size["space"] * m
        res = [r, r, r, size["time"]]
        planes.append([
            torch.nn.Parameter((0.9 + 0.2 * torch.rand(res[j], res[i], size["channels"], generator=gen)).to(device))
            for i, j in itertools.combinations(range(4), 2)
        ])
    return planes


def make_points(size, layout, device):
    """[N, 4] in [-1, 1]: uniform random, or `rays` = 64-sample runs along random straight lines."""
    gen = torch.Generator().manual_seed(1)
    n = size["points"]
    if layout == "uniform":
        pts = torch.rand(n, 4, generator=gen) * 2 - 1
    else:
        per_ray = 64
        rays = n // per_ray
        origin = torch.rand(rays, 1, 3, generator=gen) * 2 - 1
        direction = torch.nn.functional.normalize(torch.randn(rays, 1, 3, generator=gen), dim=-1)
        steps = torch.linspace(0, 2, per_ray).view(1, per_ray, 1)
        xyz = (origin + steps * direction).clamp(-1, 1)
        t = (torch.rand(rays, 1, 1, generator=gen) * 2 - 1).expand(rays, per_ray, 1)
        pts = torch.cat([xyz, t], dim=-1).reshape(-1, 4)
    return pts.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    """Median wall-clock seconds of fn() over `repeats` runs (after one warm-up run)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def interleaved(fns: dict, device, repeats):
    """Time several callables round-robin; returns ({name: median seconds}, {name: min seconds}).

    The rates are computed from the median; the minimum is printed too because on a
    shared machine it is the run least disturbed by other processes.
    """
    for fn in fns.values():
        fn()
    sync(device)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, {k: min(v) for k, v in times.items()}


def bench_hexplane(size_name, layout, device, repeats):
    from loopnerf.kernels import hexplane_features, reference

    size = SIZES[size_name]
    planes = make_planes(size, device)
    flat = [p for s in planes for p in s]
    points = make_points(size, layout, device)
    impls = {"taichi": hexplane_features, "reference": reference.hexplane_features}

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(points, planes, channels_last=True)
        return run

    def forward_backward(fn):
        def run():
            for p in flat:
                p.grad = None
            fn(points, planes, channels_last=True).sum().backward()
        return run

    results = []
    for mode, wrap in (("forward", forward), ("forward+backward", forward_backward)):
        med, best = interleaved({k: wrap(f) for k, f in impls.items()}, device, repeats)
        rate = {k: size["points"] / v for k, v in med.items()}
        results.append(dict(
            name="hexplane", size=size_name, layout=layout, mode=mode, device=str(device),
            threads=torch.get_num_threads(),
            points=size["points"], channels=size["channels"], space_res=[size["space"] * m for m in size["scales"]],
            time_res=size["time"],
            taichi_points_per_s=round(rate["taichi"]), reference_points_per_s=round(rate["reference"]),
            taichi_ms=round(med["taichi"] * 1e3, 2), reference_ms=round(med["reference"] * 1e3, 2),
            ratio=round(rate["taichi"] / rate["reference"], 3),
            taichi_min_ms=round(best["taichi"] * 1e3, 2), reference_min_ms=round(best["reference"] * 1e3, 2),
            ratio_of_min=round(best["reference"] / best["taichi"], 3), repeats=repeats,
        ))
    return results


def bench_volume_render(size_name, device, repeats):
    from loopnerf.kernels import reference, volume_render

    size = SIZES[size_name]
    gen = torch.Generator().manual_seed(2)
    r, s = size["rays"], size["samples"]
    sigmas = (torch.rand(r, s, generator=gen) * 20).to(device).requires_grad_(True)
    colors = torch.rand(r, s, 3, generator=gen).to(device).requires_grad_(True)
    deltas = (torch.rand(r, s, generator=gen) * 0.05).to(device).requires_grad_(True)
    inputs = (sigmas, colors, deltas)
    # a dense per-sample target for the weights (like a depth or distortion term)
    sample_depth = torch.linspace(0, 1, s).expand(r, s).contiguous().to(device)
    impls = {"taichi": volume_render, "reference": reference.volume_render}

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(*inputs)
        return run

    def forward_backward(fn):
        def run():
            color, weights = fn(*inputs)
            # a colour loss plus a weights term (distortion/depth use the weights)
            torch.autograd.grad(color.square().sum() + (weights * sample_depth).sum(), inputs)
        return run

    results = []
    for mode, wrap in (("forward", forward), ("forward+backward", forward_backward)):
        med, best = interleaved({k: wrap(f) for k, f in impls.items()}, device, repeats)
        rate = {k: r / v for k, v in med.items()}
        results.append(dict(
            name="volume_render", size=size_name, mode=mode, device=str(device), rays=r, samples=s,
            threads=torch.get_num_threads(),
            taichi_rays_per_s=round(rate["taichi"]), reference_rays_per_s=round(rate["reference"]),
            taichi_ms=round(med["taichi"] * 1e3, 3), reference_ms=round(med["reference"] * 1e3, 3),
            ratio=round(rate["taichi"] / rate["reference"], 3),
            taichi_min_ms=round(best["taichi"] * 1e3, 3), reference_min_ms=round(best["reference"] * 1e3, 3),
            ratio_of_min=round(best["reference"] / best["taichi"], 3), repeats=repeats,
        ))
    return results


def first_call_probe(size_name, device):
    """(Run in a child process.) Seconds of the first and of a steady call of both kernels."""
    from loopnerf.kernels import hexplane_features, volume_render

    size = dict(SIZES[size_name], points=4096)
    planes = make_planes(size, device)
    points = make_points(size, "uniform", device)
    sig = torch.rand(64, 48, device=device, requires_grad=True)
    col = torch.rand(64, 48, 3, device=device, requires_grad=True)
    dlt = torch.rand(64, 48, device=device, requires_grad=True)

    def call():
        hexplane_features(points, planes, channels_last=True).sum().backward()
        c, w = volume_render(sig, col, dlt)
        (c.sum() + w.sum()).backward()
        sync(device)

    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    steady, _ = timed(call, device, 3)
    return first - steady


def bench_compile(size_name, device):
    results = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, LOOPNERF_TAICHI_CACHE=cache)
        for state in ("cold", "warm"):
            out = subprocess.run(
                [sys.executable, __file__, "--probe", size_name, "--device", str(device)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout
            seconds = float([line for line in out.splitlines() if line.startswith("PROBE ")][-1].split()[1])
            results.append(dict(name="compile", size=size_name, cache=state, device=str(device),
                                seconds=round(seconds, 2)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["cpu", "paper"], choices=sorted(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layouts", nargs="+", default=["uniform", "rays"], choices=["uniform", "rays"])
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for both torch and Taichi (1 gives figures that a busy shared machine disturbs least)",
    )
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["LOOPNERF_CPU_THREADS"] = str(args.threads)  # read when Taichi starts
    if args.probe:
        print(f"PROBE {first_call_probe(args.probe, device)}")
        return
    if not args.skip_compile:
        for size_name in args.sizes:  # kernels are compiled per channel count, so per size
            for line in bench_compile(size_name, device):
                print(json.dumps(line), flush=True)
    for size_name in args.sizes:
        for layout in args.layouts:
            for line in bench_hexplane(size_name, layout, device, args.repeats):
                print(json.dumps(line), flush=True)
        for line in bench_volume_render(size_name, device, args.repeats):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
