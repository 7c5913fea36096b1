"""Viewer renderer speed: steady-state frame time and fps over an orbit.

Prints one JSON line per image size (default 320x240 and 640x480) with the Taichi
renderer's compile time (Taichi start + kernel compile or offline-cache load, measured
once), its median / mean steady-state frame time and fps over an orbit of N frames
(camera and loop phase change every frame, so nothing is cached), and the plain-PyTorch
reference renderer's time for one frame at the same size (its default 192 samples per
ray), with the speed ratio. Unless --no-unbounded, also the same orbit rendered
without the .loop's per-cell density bounds (every occupied cell marched at the base
step: the renderer before the bounds existed), with the ratio.

Usage:
    .venv/bin/python benchmarks/viewer.py [--loop scene.loop] [--sizes 320x240,640x480]
        [--frames 24] [--step-scale 1.0] [--no-reference]

Without --loop it uses the built-in test loop sized like a real scene (C = 16 features,
resolution 64 x scales (1, 2, 4), F = 24 frames, occupancy 32^3), baked once and cached
in ~/.cache/loopnerf/ (baking it takes a minute or two on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def default_loop_path() -> Path:
    """Bake (once) and return the cached benchmark loop."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loopnerf"
    path = cache / "bench_viewer_c16_r64_s124_f24_g32_bounds.loop"
    if not path.exists():
        from loopnerf.export.demo_loop import make_test_loop
        from loopnerf.export.loop_format import save_loop

        print(f"# baking the benchmark loop into {path} (once)", flush=True)
        baked = make_test_loop(frames=24, resolution=64, features=16, scales=(1, 2, 4), occupancy_resolution=32)
        save_loop(path, baked)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", type=Path, default=None, help="baked .loop to render (default: the cached test loop)")
    ap.add_argument("--sizes", default="320x240,640x480", help="comma-separated WxH image sizes")
    ap.add_argument("--frames", type=int, default=24, help="orbit frames timed per size")
    ap.add_argument("--step-scale", type=float, default=1.0, help="marching step multiplier (1 = as baked)")
    ap.add_argument("--arch", default=None, help="cuda or cpu (default: CUDA when available)")
    ap.add_argument("--no-reference", action="store_true", help="skip timing the PyTorch reference renderer")
    ap.add_argument("--no-unbounded", action="store_true", help="skip the orbit without density bounds")
    args = ap.parse_args()

    import numpy as np

    from loopnerf.export.loop_format import load_loop
    from loopnerf.viewer.orbit_camera import orbit_path
    from loopnerf.viewer.renderer import Renderer

    path = args.loop or default_loop_path()
    baked = load_loop(path)
    poses = orbit_path(baked.camera["c2w"], baked.box, baked.up, args.frames)
    renderer = None
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        if renderer is None:
            renderer = Renderer(baked, w, h, arch=args.arch, step_scale=args.step_scale)
        renderer.resize(w, h)
        renderer.render(poses[0], 0.0)  # compile (first size only) + allocate this size
        times, samples = [], []
        for i, c2w in enumerate(poses):
            renderer.render(c2w, (i + 0.37) / baked.fps)
            times.append(renderer.last_frame_seconds)
            samples.append(float(renderer.last_samples_per_ray().mean()))
        med = statistics.median(times)
        row = {
            "benchmark": "viewer_render",
            "loop": str(path),
            "size": f"{w}x{h}",
            "arch": renderer.arch,
            "step_scale": args.step_scale,
            "compile_s": round(renderer.compile_seconds, 3),
            "frames_timed": len(times),
            "frame_ms_median": round(1000 * med, 2),
            "frame_ms_mean": round(1000 * statistics.fmean(times), 2),
            "fps": round(1.0 / med, 2),
            "samples_per_ray_mean": round(statistics.fmean(samples), 1),
            "samples_per_s": round(statistics.fmean(samples) * w * h / med),
            "density_bounds": baked.density_max is not None,
            "target_fps": 30 if (w, h) == (320, 240) else None,
            "cpu_count": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
        }
        if not args.no_unbounded and baked.density_max is not None:
            import dataclasses

            plain = Renderer(dataclasses.replace(baked, density_max=None), w, h, arch=args.arch, step_scale=args.step_scale)
            plain.render(poses[0], 0.0)
            plain_times = []
            for i, c2w in enumerate(poses):
                plain.render(c2w, (i + 0.37) / baked.fps)
                plain_times.append(plain.last_frame_seconds)
            plain_med = statistics.median(plain_times)
            row.update(
                unbounded_frame_ms_median=round(1000 * plain_med, 2),
                speedup_vs_unbounded=round(plain_med / med, 2),
            )
        if not args.no_reference:
            from loopnerf.export.reference_render import render_camera

            intr = renderer.intrinsics_for(w, h)
            k = dict(fx=intr.fx, fy=intr.fy, cx=intr.cx, cy=intr.cy, width=w, height=h)
            t0 = time.perf_counter()
            ref = render_camera(baked, poses[1], k, phase=renderer.phase_at(1.37 / baked.fps))
            ref_s = time.perf_counter() - t0
            rgb, _ = renderer.render(poses[1], 1.37 / baked.fps)
            mse = float(np.mean((rgb / 255.0 - ref["rgb"].numpy()) ** 2))
            row.update(
                reference_frame_s=round(ref_s, 3),
                speedup_vs_reference=round(ref_s / med, 1),
                psnr_vs_reference_db=round(-10 * np.log10(max(mse, 1e-12)), 2),
            )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
