"""`loopnerf render`: render a camera file from a run (stage-1 fit or loop) or a baked .loop."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from tyro.conf import Positional

from loopnerf.errors import ConfigError


def depth_to_png(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Depth [H, W] (world units) -> uint8 [H, W, 3] with matplotlib's turbo map (near = red)."""
    import matplotlib

    x = 1.0 - np.clip((depth - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return (matplotlib.colormaps["turbo"](x)[..., :3] * 255).astype(np.uint8)


def load_renderable(source: Path, stage: str, samples: int | None = None):
    """A function (c2w, intrinsics, time, static) -> {"rgb", "depth"} for `source`.

    samples: for a run directory, N evenly spaced samples per ray instead of the proposal
    sampler (see `render_image`); not for a baked .loop (its renderer marches by itself)."""
    source = Path(source)
    if samples is not None and int(samples) < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    if source.suffix == ".loop":
        if samples is not None:
            raise ConfigError("--samples applies to a run directory; a baked .loop is marched by the viewer's renderer")
        from loopnerf.viewer.renderer import Renderer
        from loopnerf.export import load_loop

        baked = load_loop(source)
        cache: dict = {}

        def render_baked(c2w, k, time, static=False):
            if static:
                raise ConfigError("--static renders the stage-1 field; a baked loop has no separate static render")
            key = (k.width, k.height)
            if key not in cache:
                cache[key] = Renderer(baked, k.width, k.height)
            rgb, depth = cache[key].render_phase(np.asarray(c2w), float(time), intrinsics=k)
            return {"rgb": rgb.astype(np.float32) / 255.0, "depth": depth}

        return render_baked
    from loopnerf.model.render_image import render_image

    from loopnerf.run_folder import RunFolder

    if stage == "fit":
        model, _ = RunFolder(source).load_stage1()
    elif stage == "loop":
        model, _ = RunFolder(source).load_loop_model("loop")
    else:
        raise ConfigError(f"unknown stage {stage!r}: use 'fit' or 'loop'")

    def render_model(c2w, k, time, static=False):
        return render_image(model, c2w, k, time, static=static, uniform_samples=samples)

    return render_model


def render(
    source: Positional[Path],
    cameras: Path,
    out: Path = Path("renders"),
    stage: Literal["fit", "loop"] = "fit",
    depth: bool = False,
    static: bool = False,
    video: Optional[Path] = None,
    fps: float = 24.0,
    samples: Optional[int] = None,
) -> int:
    """Render every camera of a camera file to OUT/00000.png ... in file order.

    Args:
        source: a run directory (stage-1 fit or distilled loop) or a baked `.loop` file.
        cameras: nerfstudio-style camera file (`transform_matrix`, intrinsics, `time`): capture
            time in [0, 1] for `--stage fit`, loop phase in [0, 1) for loops.
        out: output folder for the PNG frames.
        stage: which model of a run directory: 'fit' (stage 1) or 'loop' (stage 2).
        depth: also write depth maps (OUT/depth_00000.png colour-mapped, OUT/depth.npy in world units).
        static: render only the static part (time planes as ones); stage 1 only.
        video: also write the frames as a video (.mp4 or .gif).
        fps: frame rate of the video, frames per second.
        samples: run directories only: integrate each ray with this many evenly spaced
            samples instead of the trained proposal sampler (slower; converges to the
            field's exact volume integral, which is what the baked viewer computes;
            e.g. 1024 to compare a .loop against its model).
    """
    import imageio.v3 as iio
    from rich.progress import track

    from loopnerf.data.camera_file import load_cameras

    cams = load_cameras(cameras)
    fn = load_renderable(source, stage, samples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames, depths = [], []
    for i in track(range(len(cams)), description="render", transient=True):
        r = fn(cams.c2w[i], cams.intrinsics[i], float(cams.times[i]), static)
        img = (np.clip(r["rgb"], 0, 1) * 255 + 0.5).astype(np.uint8)
        iio.imwrite(out / f"{i:05d}.png", img)
        frames.append(img)
        depths.append(r["depth"])
    if depth:
        d = np.stack(depths).astype(np.float32)
        np.save(out / "depth.npy", d)
        finite = d[np.isfinite(d) & (d > 0)]
        lo, hi = (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0.0, 1.0)
        for i, di in enumerate(d):
            iio.imwrite(out / f"depth_{i:05d}.png", depth_to_png(di, lo, hi))
    if video is not None:
        from loopnerf.video import write_video

        write_video(video, frames, fps)
    print(f"rendered {len(cams)} frames to {out}" + (f" and {video}" if video else ""))
    return 0
