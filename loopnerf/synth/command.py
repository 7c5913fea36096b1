"""`loopnerf synth`: render the built-in synthetic capture with ground truth.

Python API: `make_synthetic_capture(SynthConfig(...)) -> (Capture, gt)` renders in
memory; `write_synthetic_capture(out_dir, capture, gt)` writes it; `synth(...)` is the
CLI command doing both.

Times and the loop (precisely):
- the capture has N frames; frame i has capture time t_i = i / (N - 1) in [0, 1];
- the moving parts are a function of the loop phase (i mod P) / P, so frames i and
  i + P show the same scene state exactly (P = `period`, in frames);
- ground-truth frame k (k = 0 .. P-1, file `gt/<camera>/%05d.png`) shows the scene at
  frame index k, i.e. capture time k / (N - 1) and loop phase k / P; by periodicity it
  is also the state at every frame k + m P (capture time (k + m P) / (N - 1));
- `gt/<camera>/mask.png` is 255 where the pixel changes during the period (any colour
  channel of any gt frame differs from gt frame 0 by more than 2/255), 0 elsewhere.

Output folder:
```
OUT/transforms.json, OUT/images/%05d.png   nerfstudio format (every 10th frame from
                                           frame 5 held out: 5, 15, 25, ...)
OUT/gt/meta.json                           scene, seed, period, fps, still stretches,
                                           the 3 ground-truth cameras (c2w, intrinsics)
OUT/gt/{supervised,novel,extrapolated}/%05d.png + mask.png
```
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.errors import ConfigError

GT_CAMERAS = ("supervised", "novel", "extrapolated")
MASK_THRESHOLD = 2.0 / 255.0  # a pixel "moves" if it changes by more than this in some channel


@dataclass
class SynthConfig:
    """Settings of the synthetic capture.

    Attributes:
        scene: moving parts: "flag", "windmill", "water" or "all" (all three).
        frames: number of frames N of the video.
        size: image width = height in pixels.
        period: motion period P in frames.
        seed: seed of the camera path, jitter, palette and noise textures.
        fov: field of view in degrees (horizontal = vertical, square images).
        fps: nominal frame rate (frames per second) stored with the capture.
        supersample: s; s x s rays per pixel, averaged (anti-aliasing).
        eval_every: every `eval_every`-th frame, from frame eval_every // 2, is held out.
    """

    scene: str = "flag"
    frames: int = 240
    size: int = 96
    period: int = 24
    seed: int = 0
    fov: float = 50.0
    fps: float = 24.0
    supersample: int = 2
    eval_every: int = 10

    def check(self) -> None:
        """Raise `ConfigError` naming the option if a setting cannot work."""
        from loopnerf.synth.scene import SCENE_KINDS

        if self.scene not in SCENE_KINDS:
            raise ConfigError(f"synth: option 'scene' must be one of {sorted(SCENE_KINDS)}, got '{self.scene}'")
        if self.size < 8:
            raise ConfigError(f"synth: option 'size' must be at least 8 pixels, got {self.size}")
        if self.period < 2:
            raise ConfigError(f"synth: option 'period' must be at least 2 frames, got {self.period}")
        if self.frames < max(10, self.period):
            raise ConfigError(
                f"synth: option 'frames' ({self.frames}) must be at least 10 and at least the period ({self.period})"
            )
        if not 5.0 <= self.fov <= 150.0:
            raise ConfigError(f"synth: option 'fov' must be in [5, 150] degrees, got {self.fov}")
        if self.supersample < 1:
            raise ConfigError(f"synth: option 'supersample' must be >= 1, got {self.supersample}")
        if self.fps <= 0:
            raise ConfigError(f"synth: option 'fps' must be positive, got {self.fps}")
        if self.eval_every < 2:
            raise ConfigError(f"synth: option 'eval_every' must be >= 2, got {self.eval_every}")

    def intrinsics(self) -> Intrinsics:
        """Pinhole intrinsics of the square images (principal point at the centre)."""
        f = 0.5 * self.size / math.tan(math.radians(self.fov) / 2)
        return Intrinsics(f, f, self.size / 2, self.size / 2, self.size, self.size)


def _progress(enabled: bool):
    """A rich progress bar (or a silent stand-in)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]synth[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def make_synthetic_capture(config: SynthConfig | None = None, *, progress: bool = False) -> tuple[Capture, dict]:
    """Render the synthetic capture and its ground truth in memory.

    Returns:
        capture: `Capture` with uint8 images [N, size, size, 3], OpenGL c2w [N, 4, 4],
            times i / (N - 1), held-out frames `eval_idx` = 5, 15, 25, ... (for
            eval_every = 10), `box` = the scene box [2, 3] in world units, and
            `meta["synth"]` = the JSON-able part of the ground truth.
        gt: dict with keys "scene", "seed", "period" (frames), "fps", "frames" (N),
            "still_segments" (list of [start, stop) frame ranges), "gt_frame_times"
            ([P] capture times of the gt frames, k / (N - 1)), "background" (RGB),
            "box" ([2, 3]), and "cameras": name -> {"c2w" [4, 4], "intrinsics"
            (`Intrinsics`), "description", "frames" uint8 [P, H, W, 3],
            "mask" bool [H, W] (True = pixel moves during the period)}.
    """
    from loopnerf.data.images import to_uint8
    from loopnerf.synth.camera_path import ground_truth_cameras, make_camera_path
    from loopnerf.synth.raycast import render_view
    from loopnerf.synth.scene import BACKGROUND, SCENE_BOX, SyntheticScene

    cfg = config or SynthConfig()
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    scene = SyntheticScene(cfg.scene, cfg.period, cfg.seed)
    path = make_camera_path(cfg.frames, rng)
    k = cfg.intrinsics()
    n, p = cfg.frames, cfg.period
    cams = ground_truth_cameras(path)

    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    gt_frames = {name: np.empty((p, cfg.size, cfg.size, 3), np.uint8) for name in cams}
    with _progress(progress) as bar:
        task = bar.add_task("capture", total=n)
        for i in range(n):
            images[i] = to_uint8(render_view(scene.parts(i), path.c2w[i], k, supersample=cfg.supersample))
            bar.advance(task)
        for name, (c2w, _) in cams.items():
            task = bar.add_task(f"ground truth '{name}'", total=p)
            for j in range(p):
                gt_frames[name][j] = to_uint8(render_view(scene.parts(j), c2w, k, supersample=cfg.supersample))
                bar.advance(task)

    idx = np.arange(n)
    held = idx % cfg.eval_every == cfg.eval_every // 2
    gt = {
        "scene": cfg.scene,
        "seed": cfg.seed,
        "period": p,
        "fps": cfg.fps,
        "frames": n,
        "still_segments": [[int(a), int(b)] for a, b in path.stills],
        "gt_frame_times": [j / (n - 1) for j in range(p)],
        "background": list(BACKGROUND),
        "box": SCENE_BOX.copy(),
        "cameras": {},
    }
    for name, (c2w, description) in cams.items():
        frames = gt_frames[name]
        change = np.abs(frames.astype(np.int16) - frames[:1].astype(np.int16)).max(axis=(0, 3))
        gt["cameras"][name] = {
            "c2w": c2w,
            "intrinsics": k,
            "description": description,
            "frames": frames,
            "mask": change > MASK_THRESHOLD * 255.0,
        }
    capture = Capture(
        images=images,
        c2w=path.c2w,
        intrinsics=[k] * n,
        times=idx / (n - 1),
        train_idx=idx[~held],
        eval_idx=idx[held],
        box=SCENE_BOX.copy(),
        source=f"<synthetic {cfg.scene} seed {cfg.seed}>",
        name=f"synth_{cfg.scene}",
        meta={"synth": gt_meta(gt, cfg)},
    )
    return capture, gt


def render_true_frames(
    config: SynthConfig, c2w: np.ndarray, frames, intrinsics: Intrinsics | None = None
) -> np.ndarray:
    """Render the true scene from any camera at the given integer frame indices.

    For scoring from cameras other than the 3 stored ones (e.g. the pose a still
    segment was found at). Frame index f shows loop phase (f mod period) / period,
    i.e. capture time f / (frames - 1) (see the module docstring).

    Args:
        config: the capture's settings (scene, period, seed, size, fov, supersample).
        c2w: [4, 4] camera-to-world, OpenGL axes.
        frames: iterable of integer frame indices.
        intrinsics: camera intrinsics (default: the capture's).
    Returns: uint8 [len(frames), H, W, 3].
    """
    from loopnerf.data.images import to_uint8
    from loopnerf.synth.raycast import render_view
    from loopnerf.synth.scene import SyntheticScene

    config.check()
    scene = SyntheticScene(config.scene, config.period, config.seed)
    k = intrinsics or config.intrinsics()
    out = [to_uint8(render_view(scene.parts(int(f)), np.asarray(c2w, float), k, supersample=config.supersample)) for f in frames]
    return np.stack(out) if out else np.zeros((0, k.height, k.width, 3), np.uint8)


def gt_meta(gt: dict, cfg: SynthConfig) -> dict:
    """The JSON-able description of the ground truth written to `gt/meta.json`."""
    n = gt["frames"]
    meta = {
        "scene": gt["scene"],
        "seed": gt["seed"],
        "config": asdict(cfg),
        "period_frames": gt["period"],
        "period_time": gt["period"] / (n - 1),
        "fps": gt["fps"],
        "frames": n,
        "times": "capture time of frame i is i / (frames - 1); the motion repeats every period_frames frames",
        "still_segments": gt["still_segments"],
        "gt_frames": "gt/<camera>/%05d.png, k = 0 .. period_frames - 1: the scene at frame index k "
        "(capture time k / (frames - 1), loop phase k / period_frames)",
        "gt_frame_times": gt["gt_frame_times"],
        "mask": f"gt/<camera>/mask.png: 255 where some gt frame differs from gt frame 0 by more than "
        f"{MASK_THRESHOLD * 255:g}/255 in a channel",
        "background": gt["background"],
        "box": np.asarray(gt["box"]).tolist(),
        "cameras": {},
    }
    for name, cam in gt["cameras"].items():
        k = cam["intrinsics"]
        meta["cameras"][name] = {
            "description": cam["description"],
            "c2w": np.asarray(cam["c2w"]).tolist(),
            "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height},
            "frames": [f"{name}/{j:05d}.png" for j in range(gt["period"])],
            "mask": f"{name}/mask.png",
            "moving_pixels": int(np.asarray(cam["mask"]).sum()) if "mask" in cam else None,
        }
    return meta


def write_synthetic_capture(out_dir, capture: Capture, gt: dict) -> Path:
    """Write `capture` (nerfstudio format) and the ground truth (`gt/`) under `out_dir`.

    Returns the path of `transforms.json`.
    """
    import imageio.v3 as iio

    from loopnerf.data.nerfstudio import write_nerfstudio

    out = Path(out_dir)
    meta = capture.meta["synth"]
    extra = {
        "loopnerf_synth": {
            "scene": meta["scene"],
            "seed": meta["seed"],
            "period_frames": meta["period_frames"],
            "fps": meta["fps"],
            "background": meta["background"],
            "ground_truth": "gt/meta.json",
        }
    }
    path = write_nerfstudio(out, capture, extra=extra)
    gt_dir = out / "gt"
    gt_dir.mkdir(parents=True, exist_ok=True)
    for name, cam in gt["cameras"].items():
        cam_dir = gt_dir / name
        cam_dir.mkdir(exist_ok=True)
        for j, frame in enumerate(cam["frames"]):
            iio.imwrite(cam_dir / f"{j:05d}.png", frame)
        iio.imwrite(cam_dir / "mask.png", np.where(cam["mask"], 255, 0).astype(np.uint8))
    (gt_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return path


def synth(
    out: Annotated[Path, tyro.conf.arg(metavar="OUT")],
    /,
    scene: Literal["flag", "windmill", "water", "all"] = "flag",
    frames: int = 240,
    size: int = 96,
    period: int = 24,
    seed: int = 0,
    fov: float = 50.0,
    fps: float = 24.0,
    supersample: int = 2,
    overwrite: bool = False,
) -> int:
    """Render the built-in synthetic capture: a small textured scene with exactly periodic
    motion, filmed by a handheld-style camera that holds still 3-4 times, with ground truth.

    Writes OUT/transforms.json + OUT/images/ (nerfstudio format; every 10th frame from
    frame 5 is held out) and OUT/gt/ (meta.json with the period, the true still stretches
    and 3 test cameras; one full period of frames and a moving-pixel mask per camera).
    Frame i has capture time i / (frames - 1); the motion repeats every `period` frames.

    Args:
        out: output folder (created; must be empty unless --overwrite).
        scene: moving parts: a waving flag, a spinning windmill, water ripples, or all three.
        frames: number of video frames.
        size: image width and height in pixels.
        period: motion period in frames (the loop length).
        seed: random seed of the camera path, jitter and textures (same seed, same output).
        fov: camera field of view in degrees.
        fps: nominal frame rate stored with the capture (frames per second).
        supersample: rays per pixel along each axis (anti-aliasing; 1 = fastest).
        overwrite: replace an existing non-empty OUT folder.
    """
    cfg = SynthConfig(scene=scene, frames=frames, size=size, period=period, seed=seed, fov=fov, fps=fps, supersample=supersample)
    cfg.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"synth: OUT '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"synth: OUT '{out}' is not empty (pass --overwrite to replace it)")
        for sub in ("images", "masks", "gt"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "transforms.json").unlink(missing_ok=True)
    start = time.perf_counter()
    capture, gt = make_synthetic_capture(cfg, progress=True)
    write_synthetic_capture(out, capture, gt)
    seconds = time.perf_counter() - start
    stills = ", ".join(f"{a}-{b - 1}" for a, b in gt["still_segments"])
    print(
        f"wrote {out}: {len(capture)} frames of {size}x{size} ({len(capture.eval_idx)} held out), "
        f"period {period} frames, still stretches at frames {stills}; ground truth in {out / 'gt'} "
        f"({seconds:.1f} s)"
    )
    return 0
