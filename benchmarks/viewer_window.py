"""The viewer window's own frame rate (pyglet under Xvfb, or the current display).

Opens `loopnerf view`'s window (`ViewerApp`) on a baked loop and runs its main loop
(`ViewerApp.step`: events, clock, render, texture upload, HUD, flip) in three phases,
timing every iteration:

1. `dragging`: a scripted left-button drag orbits the camera every frame, so the
   window renders at its moving quality (a size from MOVING_FACTORS that fits the
   frame budget, adapted every moving frame; MOVING_STEP_SCALE
   times the step) and nothing can be cached;
2. `refine`: the drag stops (the button is released); the window keeps running on the
   wall clock until it shows a full-resolution frame: the seconds from the release to
   that frame; `refine, no release`: the same after a drag event with no release (a
   wheel zoom ends that way), where the window waits MOVING_SECONDS first;
3. `still, first loop`: the camera rests and the loop plays one frame per iteration
   through its F frames, each rendered at full quality (and cached);
4. `still, cached`: the next loop replays the cached frames (upload + draw only).

Prints one JSON line per phase: frames, median frame time (ms) and fps, render size
(and for `refine` the seconds to full resolution, target <= 0.5 s).
Without a DISPLAY it starts its own Xvfb (apt-get install xvfb). Xvfb draws with a
software OpenGL, as a headless CI machine does.

Usage:
    .venv/bin/python benchmarks/viewer_window.py [--loop scene.loop] [--size 320x240]
        [--drag-frames 24] [--backend bricks|planes]

Without --loop it uses the cached benchmark loop of benchmarks/viewer.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def start_display() -> subprocess.Popen | None:
    """Start Xvfb and point DISPLAY at it, unless DISPLAY is already set (then None)."""
    if os.environ.get("DISPLAY"):
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test fixtures' Xvfb starter
    from fixtures.xvfb import start_xvfb

    try:
        proc, display = start_xvfb()
    except (FileNotFoundError, RuntimeError) as err:
        sys.exit(f"no DISPLAY and {err}")
    os.environ["DISPLAY"] = display
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", type=Path, default=None, help="baked .loop (default: the viewer benchmark's loop)")
    ap.add_argument("--size", default="320x240", help="window size WxH")
    ap.add_argument("--drag-frames", type=int, default=24, help="iterations of the dragging phase")
    ap.add_argument("--backend", choices=("bricks", "planes"), default="bricks", help="renderer backend")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    xvfb = start_display()
    try:
        import importlib.util

        import pyglet

        from loopnerf.export.loop_format import load_loop
        from loopnerf.viewer.app import ViewerApp
        from loopnerf.viewer.renderer import Renderer

        if args.loop is None:  # the renderer benchmark's cached loop (benchmarks/viewer.py)
            spec = importlib.util.spec_from_file_location("viewer_benchmark", Path(__file__).with_name("viewer.py"))
            bench = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(bench)
        path = args.loop or bench.default_loop_path()
        baked = load_loop(path)
        renderer = Renderer(baked, w, h, backend=args.backend)
        app = ViewerApp(renderer, w, h, title="benchmark")
        app.step(0.0)  # compile + first frame
        left = pyglet.window.mouse.LEFT

        def timed(n: int, before_each, dt: float | None) -> tuple[list[float], tuple[int, int]]:
            times, size = [], None
            for _ in range(n):
                before_each()
                t0 = time.perf_counter()
                app.step(dt)
                times.append(time.perf_counter() - t0)
                size = app.last_rgb.shape[1], app.last_rgb.shape[0]
            return times, size

        def report(phase: str, times: list[float], size) -> None:
            med = statistics.median(times)
            print(json.dumps({
                "benchmark": "viewer_window", "phase": phase, "loop": str(path), "window": f"{w}x{h}",
                "render_size": f"{size[0]}x{size[1]}", "frames": len(times), "frame_ms_median": round(1000 * med, 2),
                "fps": round(1.0 / med, 2), "backend": args.backend, "arch": renderer.arch, "display": os.environ.get("DISPLAY"),
                "xvfb": xvfb is not None, "cpu_count": os.cpu_count(),
            }), flush=True)

        times, size = timed(args.drag_frames, lambda: app.on_mouse_drag(w // 2, h // 2, 3, 0, left, 0), 0.0)
        report("dragging", times, size)
        full = app.render_size(moving=False)

        def refine(phase: str, stop) -> None:
            """Drag a few frames, stop with `stop()`, run on the wall clock to a full-size frame."""
            for _ in range(4):
                app.on_mouse_drag(w // 2, h // 2, 3, 0, left, 0)
                app.step()
            app.on_mouse_drag(w // 2, h // 2, 3, 0, left, 0)
            stop()
            stopped = time.perf_counter()
            frames = 0
            while True:
                app.step()
                frames += 1
                if (app.last_rgb.shape[1], app.last_rgb.shape[0]) == full or time.perf_counter() - stopped > 30:
                    break
            print(json.dumps({
                "benchmark": "viewer_window", "phase": phase, "loop": str(path), "window": f"{w}x{h}",
                "render_size": f"{full[0]}x{full[1]}", "frames": frames,
                "seconds_to_full_resolution": round(time.perf_counter() - stopped, 3),
                "target_s": 0.5, "arch": renderer.arch, "xvfb": xvfb is not None, "cpu_count": os.cpu_count(),
            }), flush=True)

        refine("refine", lambda: app.on_mouse_release(w // 2, h // 2, left, 0))
        refine("refine, no release", lambda: None)
        app.last_input = -1e9  # the camera rests from here on
        frame_dt = 1.0 / renderer.fps
        app.time = 0.0
        times, size = timed(renderer.frames, lambda: None, frame_dt)
        report("still, first loop", times, size)
        times, size = timed(renderer.frames, lambda: None, frame_dt)
        report("still, cached", times, size)
        app.close()
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)


if __name__ == "__main__":
    main()
