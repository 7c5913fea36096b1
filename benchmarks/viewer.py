"""Viewer renderer speed and fidelity: the brick renderer beside the planes renderer.

For each image size (default 320x240 and 640x480) and each renderer, an orbit of N
views around the .loop's default camera (camera and loop phase change every frame, so
nothing is cached) after one warm-up frame, timed in steady state. One JSON line per
(renderer, size): median / mean frame time, fps, samples per ray, ns per sample (wall
time of the frame / samples; on this CPU both cores work on one frame), and the brick
grid's build time (it is built when a .loop is loaded).

The renderers:
- `planes` on `--baseline-loop` (default: the same file): the renderer before the
  brick grid (every sample evaluates the file's planes) - today's renderer when given
  a .loop baked by the earlier `loopnerf bake` (no culling);
- `default` on `--loop`: the default renderer (`backend="auto"`: the brick grid when it
  fits its memory budget, else the planes; the line says which and why).

With `--run RUN` (the run folder the .loop was baked from) it also scores fidelity
against the loop model's own exact integral (`render_image(..., uniform_samples=1024)`,
what `loopnerf render --stage loop --samples 1024` computes) at every still segment's
camera and intrinsics (RUN/segments.json), at two loop phases: one JSON line per
(renderer, segment, phase) with the PSNR, and a summary line per renderer.

Usage:
    .venv/bin/python benchmarks/viewer.py [--loop scene.loop] [--baseline-loop old.loop]
        [--run RUN] [--sizes 320x240,640x480] [--frames 24]

Without --loop it uses a built-in test loop sized like a real scene (C = 16 features,
resolution 64 x scales (1, 2, 4), F = 24 frames, occupancy 32^3), baked once and cached
in ~/.cache/loopnerf/ (baking it takes a minute or two on a 2-core CPU). `--room` uses
the procedural room of `loopnerf.export.room_loop` instead (opaque surfaces, a moving
ball; 48 x (1, 2, 4), F = 24, occupancy 64^3; cached the same way): the README's figures
for a loop without haze.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path


def cached_loop(name: str, make) -> Path:
    """~/.cache/loopnerf/NAME: the `BakedLoop` make() returns, baked on first use."""
    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loopnerf" / name
    if not path.exists():
        from loopnerf.export.loop_format import save_loop

        print(f"# baking the benchmark loop into {path} (once)", flush=True)
        save_loop(path, make())
    return path


def default_loop_path() -> Path:
    """The cached benchmark loop sized like a real scene (the window benchmark uses it too)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test fixtures' loop
    from fixtures.demo_loop import make_test_loop

    return cached_loop("bench_viewer_c16_r64_s124_f24_g32_bounds.loop", lambda: make_test_loop(
        frames=24, resolution=64, features=16, scales=(1, 2, 4), occupancy_resolution=32))


def room_loop_path() -> Path:
    """The cached room loop (`export/room_loop.py`): opaque surfaces, a moving ball."""
    from loopnerf.export.room_loop import make_room_loop

    return cached_loop("bench_viewer_room_r48_s124_f24_g64.loop", lambda: make_room_loop(
        frames=24, resolution=48, scales=(1, 2, 4), occupancy_resolution=64))


def time_orbit(renderer, poses, fps: float) -> dict:
    """Steady-state timing of one orbit (a warm-up frame first)."""
    renderer.render(poses[0], 0.0)
    times, samples = [], []
    for i, c2w in enumerate(poses):
        renderer.render(c2w, (i + 0.37) / fps)
        times.append(renderer.last_frame_seconds)
        samples.append(float(renderer.last_samples_per_ray().mean()))
    med = statistics.median(times)
    spr = statistics.fmean(samples)
    return {
        "frame_ms_median": round(1000 * med, 2),
        "frame_ms_mean": round(1000 * statistics.fmean(times), 2),
        "fps": round(1.0 / med, 2),
        "samples_per_ray_mean": round(spr, 2),
        "ns_per_sample": round(1e9 * med / max(spr * renderer.width * renderer.height, 1e-9), 1),
    }


def fidelity(run: Path, renderers: dict, phases=(0.13, 0.61), samples: int = 1024) -> None:
    """PSNR of each renderer against the loop model's exact integral at the still cameras."""
    import numpy as np

    from loopnerf.model.render_image import render_image
    from loopnerf.run_folder import RunFolder

    folder = RunFolder(run)
    model, _ = folder.load_loop_model("loop")
    scores: dict[str, list[float]] = {name: [] for name in renderers}
    for si, seg in enumerate(folder.read_segments().segments):
        k = seg.intrinsics
        c2w = np.asarray(seg.pose, dtype=np.float32)
        for phase in phases:
            exact = np.clip(render_image(model, c2w, k, phase, uniform_samples=samples)["rgb"], 0.0, 1.0)
            for name, r in renderers.items():
                rgb, _ = r.render_phase(c2w, phase, intrinsics=k)
                mse = float(np.mean((rgb / 255.0 - exact) ** 2))
                db = -10 * np.log10(max(mse, 1e-12))
                scores[name].append(db)
                print(json.dumps({"benchmark": "viewer_fidelity", "renderer": name, "segment": si, "phase": phase,
                                  "size": f"{k.width}x{k.height}", "psnr_vs_exact_db": round(db, 2),
                                  "exact_samples_per_ray": samples}), flush=True)
    for name, vals in scores.items():
        print(json.dumps({"benchmark": "viewer_fidelity_summary", "renderer": name, "views": len(vals),
                          "psnr_min_db": round(min(vals), 2), "psnr_mean_db": round(statistics.fmean(vals), 2),
                          "target_db": 35.0}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", type=Path, default=None, help="baked .loop to render (default: the cached test loop)")
    ap.add_argument("--room", action="store_true", help="render the procedural room loop (see above)")
    ap.add_argument("--baseline-loop", type=Path, default=None, help="the .loop the planes renderer draws (default: --loop)")
    ap.add_argument("--run", type=Path, default=None, help="run folder of the .loop: score fidelity vs the exact integral")
    ap.add_argument("--sizes", default="320x240,640x480", help="comma-separated WxH image sizes")
    ap.add_argument("--frames", type=int, default=24, help="orbit frames timed per size")
    ap.add_argument("--arch", default=None, help="cuda or cpu (default: CUDA when available)")
    ap.add_argument("--only", choices=("default", "planes"), default=None, help="time one renderer only")
    args = ap.parse_args()

    from loopnerf.export.loop_format import load_loop
    from loopnerf.viewer.orbit_camera import orbit_path
    from loopnerf.viewer.renderer import Renderer

    path = args.loop or (room_loop_path() if args.room else default_loop_path())
    baked = load_loop(path)
    base_path = args.baseline_loop or path
    base = load_loop(base_path) if args.baseline_loop else baked
    poses = orbit_path(baked.camera["c2w"], baked.box, baked.up, args.frames)
    renderers = {}
    if args.only in (None, "planes"):
        renderers["planes"] = (Renderer(base, 8, 8, arch=args.arch, backend="planes"), base_path, base)
    if args.only in (None, "default"):
        renderers["default"] = (Renderer(baked, 8, 8, arch=args.arch), path, baked)
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        rows = {}
        for name, (r, p, b) in renderers.items():
            r.resize(w, h)
            row = {"benchmark": "viewer_render", "renderer": name, "backend": r.backend, "backend_reason": r.backend_reason,
                   "loop": str(p), "size": f"{w}x{h}", "arch": r.arch,
                   **time_orbit(r, poses, b.fps),
                   "compile_s": round(r.compile_seconds, 3), "build_s": round(r.build_seconds, 3),
                   "occupied_fraction": round(float(b.occupancy.float().mean()), 4),
                   "culled": "culling" in b.extra,
                   "target_fps": {(320, 240): 30, (640, 480): 10}.get((w, h)),
                   "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}
            if r.backend == "bricks":
                row["bricks"] = r.bricks.stats
            rows[name] = row
            print(json.dumps(row), flush=True)
        if len(rows) == 2:
            print(json.dumps({"benchmark": "viewer_speedup", "size": f"{w}x{h}",
                              "default_backend": rows["default"]["backend"],
                              "default_vs_planes": round(rows["planes"]["frame_ms_median"] / rows["default"]["frame_ms_median"], 2)}), flush=True)
    if args.run is not None:
        fidelity(args.run, {name: r for name, (r, _, _) in renderers.items()})


if __name__ == "__main__":
    main()
