"""`loopnerf view`: play a baked `.loop` in a window, or render it headless to a video.

Python API: `render_headless(renderer, poses, times) -> frames` and
`loopnerf.video.write_video` writes the frames; `view(...)` is the CLI command.
"""

from __future__ import annotations

import sys
import time as _time
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from loopnerf.errors import ConfigError


def render_headless(renderer, poses, times, *, progress: bool = True):
    """Render poses[i] at times[i] seconds -> list of uint8 [H, W, 3] frames."""
    frames = []
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("rendering", total=len(times))
            for c2w, t in zip(poses, times):
                frames.append(renderer.render(c2w, float(t))[0])
                bar.advance(task)
    else:
        frames = [renderer.render(c2w, float(t))[0] for c2w, t in zip(poses, times)]
    return frames


def view(
    loop: Annotated[Path, tyro.conf.arg(metavar="SCENE.loop")],
    /,
    headless: bool = False,
    path: str = "orbit",
    seconds: Optional[float] = None,
    out: Optional[Path] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    scale: float = 1.0,
    frames: Optional[int] = None,
    screenshot: Optional[Path] = None,
    arch: Optional[Literal["cuda", "cpu"]] = None,
    step_scale: float = 1.0,
    backend: Literal["auto", "bricks", "planes"] = "auto",
    cache: bool = True,
) -> int:
    """Play a baked loop forever in an interactive window, or render it to a video.

    Window: left drag orbits, right/middle drag pans, the wheel zooms; space play/pause,
    +/- speed, ,/. step one loop frame, d RGB/depth, s screenshot PNG, r reset camera,
    h help, q/Esc quit. Frame time, fps and the loop frame show in the top-left corner.

    Args:
        loop: the baked `.loop` file (from `loopnerf bake`).
        headless: render without a display to --out (needs --out).
        path: headless camera path: "orbit" (a periodic swing about the scene),
            "still" (the .loop's default camera) or a FILE (.npy [N,4,4] or .json list
            of camera-to-world matrices, OpenGL axes; one output frame per pose).
        seconds: headless video length in seconds (default: one loop, F / fps).
        out: headless output video, .mp4 or .gif (frames per second = the loop's fps).
        width: headless image / window width in pixels (default: from the .loop camera;
            a window is at least 640 px wide).
        height: headless image / window height in pixels (default: from the .loop camera).
        scale: headless: image size = the .loop camera's size * scale; window: render
            size = window size * scale (< 1 renders fewer pixels, faster).
        frames: window mode: quit by itself after this many displayed frames.
        screenshot: window mode: PNG written when it quits (the last rendered image).
        arch: Taichi backend "cuda" or "cpu" (default: CUDA when a GPU is there).
        step_scale: ray-marching step = the .loop's step * step_scale (2 = about twice
            as fast, slightly less accurate).
        backend: "bricks" resamples the loop at load time into a sparse brick grid (one
            trilinear lookup a sample; 4-5x faster), "planes" evaluates the file's planes
            at every sample (exact, slow), "auto" (default) takes the bricks when their
            grid fits in 1.5 GB, else the planes (it says which and why).
        cache: keep the brick grid in the brick cache and read it back next time
            (about 2 s instead of 10-16 s for the demo loop): $LOOPNERF_CACHE_DIR,
            default ~/.cache/loopnerf, at most $LOOPNERF_CACHE_MB MB (default 4096);
            --no-cache builds it and stores nothing.
    """
    from loopnerf.export.loop_format import load_loop

    if not step_scale > 0:
        raise ConfigError(f"view: option 'step-scale' must be > 0, got {step_scale}")
    if backend not in ("auto", "bricks", "planes"):
        raise ConfigError(f"view: option 'backend' must be auto, bricks or planes, got '{backend}'")
    if scale <= 0:
        raise ConfigError(f"view: option 'scale' must be > 0, got {scale}")
    if arch not in (None, "cuda", "cpu"):
        raise ConfigError(f"view: option 'arch' must be 'cuda' or 'cpu', got '{arch}'")
    if headless and out is None:
        raise ConfigError("view: --headless needs --out loop.mp4 or loop.gif")
    if out is not None and Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ConfigError(f"view: option 'out' must end in .mp4 or .gif, got '{Path(out).name}'")
    if frames is not None and frames < 1:
        raise ConfigError(f"view: option 'frames' must be >= 1, got {frames}")
    baked = load_loop(loop)  # LoopFormatError (clean message) for a missing or bad file
    cam = baked.camera
    if headless:
        w = width or max(2, int(round(cam["width"] * scale)))
        h = height or max(2, int(round(cam["height"] * scale)))
        return _run_headless(baked, w, h, path, seconds, Path(out), arch, step_scale, backend, cache)
    # Window: the .loop camera's size, enlarged to at least 640 px wide (same aspect).
    k = max(1.0, 640.0 / cam["width"])
    w = width or int(round(cam["width"] * k))
    h = height or int(round(cam["height"] * k))
    from loopnerf.viewer.app import run_window

    return run_window(baked, w, h, scale=scale, frames=frames, screenshot=screenshot, arch=arch, title=str(loop),
                      step_scale=step_scale, backend=backend, cache=cache)


def _run_headless(baked, width: int, height: int, path: str, seconds: Optional[float], out: Path, arch,
                  step_scale: float = 1.0, backend: str = "auto", cache: bool = True) -> int:
    import numpy as np

    from loopnerf.viewer.orbit_camera import load_camera_path, orbit_path
    from loopnerf.viewer.renderer import Renderer

    fps = float(baked.fps)
    if path in ("orbit", "still"):
        n = int(round((seconds if seconds is not None else baked.frames / fps) * fps))
        if n < 1:
            raise ConfigError(f"view: option 'seconds' gives no frame at {fps:g} fps")
        if path == "still":
            poses = np.broadcast_to(np.asarray(baked.camera["c2w"], dtype=np.float32), (n, 4, 4))
        else:
            poses = orbit_path(baked.camera["c2w"], baked.box, baked.up, n)
    else:
        poses = load_camera_path(path)
        if seconds is not None:
            n = int(round(seconds * fps))
            poses = poses[np.arange(n) % len(poses)]
    times = np.arange(len(poses)) / fps
    from loopnerf.data.progress import progress_callback

    with progress_callback("building the brick grid", 1) as step:
        renderer = Renderer(baked, width, height, arch=arch, step_scale=step_scale, backend=backend, progress=step, cache=cache)
    print(renderer.describe(), file=sys.stderr)
    t0 = _time.perf_counter()
    frames = render_headless(renderer, poses, times, progress=sys.stderr.isatty())
    elapsed = _time.perf_counter() - t0
    from loopnerf.video import write_video

    write_video(out, frames, fps)
    steady = elapsed - (renderer.compile_seconds or 0.0)
    print(
        f"wrote {out} ({len(frames)} frames, {width}x{height}, {fps:g} fps); "
        f"Taichi {renderer.arch}: compile {renderer.compile_seconds:.2f} s, "
        f"{1000 * steady / max(len(frames), 1):.1f} ms/frame"
    )
    return 0
