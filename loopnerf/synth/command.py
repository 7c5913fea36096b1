"""`loopnerf synth`: render the built-in synthetic capture with ground truth.

Python API: `make_synthetic_capture(SynthConfig(...)) -> (Capture, gt)` renders in
memory; `write_synthetic_capture(out_dir, capture, gt)` writes it; `synth(...)` is the
CLI command doing both.

Times and the loop (precisely):
- the capture has N frames; frame i has capture time t_i = i / (N - 1) in [0, 1];
- the moving parts are a function of a loop phase and an amplitude (`motion.py`); which
  ones frame i shows is set by `motion`:
  - `natural` (the default): the tempo drifts (frame i advances the phase by
    (1 + d(i)) / P, |d| <= `tempo_drift`) and the amplitude gusts (mean 1 over the
    capture, +-`gust` before normalising), so frames i and i + P do *not* show the same
    state: like real wind, the motion never repeats exactly;
  - `periodic`: phase (i mod P) / P at amplitude 1, so frames i and i + P show the same
    scene state exactly (P = `period`, in frames);
- ground-truth frame k (k = 0 .. P-1, file `gt/<camera>/%05d.png`) shows the scene's
  uniform cycle: loop phase k / P at the mean amplitude 1 (with `periodic` motion that is
  also the state of frame k and of every frame k + m P, capture time (k + m P) / (N - 1));
- `gt/<camera>/mask.png` is 255 where the pixel changes during the period (any colour
  channel of any gt frame differs from gt frame 0 by more than 2/255), 0 elsewhere;
- `gt/stills/NN/%05d.png` are the true states the capture itself showed during still
  stretch NN (frames start..stop-1, one file per frame, file j = frame start + j),
  rendered from the stretch's mean pose (what `loopnerf select` averages the stretch
  to); `gt/stills/NN/mask.png` marks the pixels that change during the stretch.

Output folder:
```
OUT/transforms.json, OUT/images/%05d.png   nerfstudio format (every 10th frame from
                                           frame 5 held out: 5, 15, 25, ...)
OUT/gt/meta.json                           scene, seed, period, fps, still stretches,
                                           the 3 ground-truth cameras (c2w, intrinsics)
OUT/gt/{supervised,novel,extrapolated}/%05d.png + mask.png
OUT/gt/stills/NN/%05d.png + mask.png       true states at each still stretch's mean pose
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
        period: motion period P in frames (at the mean tempo, for natural motion).
        motion: "natural" (drifting tempo and gusts, never repeating exactly) or
            "periodic" (repeats exactly every `period` frames).
        tempo_drift: natural motion's peak relative tempo deviation (0.15 = +-15 %).
        gust: natural motion's peak relative amplitude deviation (0.3 = +-30 %).
        seed: seed of the camera path, jitter, palette and noise textures.
        fov: field of view in degrees (horizontal = vertical, square images).
        fps: nominal frame rate (frames per second) stored with the capture.
        supersample: s; s x s rays per pixel, averaged (anti-aliasing).
        eval_every: every `eval_every`-th frame, from frame eval_every // 2, is held out.
        backdrop: "near" (a painted wall inside the box, a flat sky: bounded) or "far"
            (no wall; hills and clouds at infinity: an unbounded scene, `parts.BACKDROPS`).
    """

    scene: Literal["flag", "windmill", "water", "all"] = "flag"
    frames: int = 240
    size: int = 96
    period: int = 24
    seed: int = 0
    fov: float = 50.0
    fps: float = 24.0
    supersample: int = 2
    eval_every: int = 10
    motion: Literal["natural", "periodic"] = "natural"
    tempo_drift: float = 0.15
    gust: float = 0.3
    backdrop: Literal["near", "far"] = "near"

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
        from loopnerf.synth.motion import MOTIONS

        if self.motion not in MOTIONS:
            raise ConfigError(f"synth: option 'motion' must be one of {list(MOTIONS)}, got '{self.motion}'")
        if not 0.0 <= self.tempo_drift < 0.5:
            raise ConfigError(f"synth: option 'tempo_drift' must be in [0, 0.5), got {self.tempo_drift}")
        if not 0.0 <= self.gust < 0.8:
            raise ConfigError(f"synth: option 'gust' must be in [0, 0.8), got {self.gust}")
        from loopnerf.synth.parts import BACKDROPS

        if self.backdrop not in BACKDROPS:
            raise ConfigError(f"synth: option 'backdrop' must be one of {list(BACKDROPS)}, got '{self.backdrop}'")

    def make_scene(self):
        """The `SyntheticScene` these settings describe (scene kind, period, seed, motion)."""
        from loopnerf.synth.scene import SyntheticScene

        return SyntheticScene(self.scene, self.period, self.seed, self.motion, self.frames, self.tempo_drift, self.gust, self.backdrop)

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
            "motion" ("natural" / "periodic"), "still_segments" (list of [start, stop)
            frame ranges), "gt_frame_times" ([P] capture times of the gt frames,
            k / (N - 1); with natural motion they are *not* the gt frames' states),
            "background" (RGB), "box" ([2, 3]), "cameras": name -> {"c2w" [4, 4],
            "intrinsics" (`Intrinsics`), "description", "frames" uint8 [P, H, W, 3]
            (the uniform cycle, phase k / P at amplitude 1), "mask" bool [H, W] (True =
            pixel moves during the period)}, and "stills": one dict per still stretch
            {"start", "stop" (frame range, stop exclusive), "c2w" [4, 4] (its mean pose),
            "intrinsics", "frames" uint8 [stop - start, H, W, 3] (the true states the
            capture showed, frame start + j in entry j), "times" (their capture times),
            "phases", "amplitudes" (the motion state of each), "mask" bool [H, W]}.
    """
    from loopnerf.data.images import to_uint8
    from loopnerf.synth.camera_path import ground_truth_cameras, make_camera_path, mean_pose
    from loopnerf.synth.raycast import render_view
    from loopnerf.synth.scene import BACKGROUND, SCENE_BOX

    cfg = config or SynthConfig()
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    scene = cfg.make_scene()
    path = make_camera_path(cfg.frames, rng)
    k = cfg.intrinsics()
    n, p = cfg.frames, cfg.period
    cams = ground_truth_cameras(path)

    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    gt_frames = {name: np.empty((p, cfg.size, cfg.size, 3), np.uint8) for name in cams}
    with _progress(progress) as bar:
        task = bar.add_task("capture", total=n)
        for i in range(n):
            images[i] = to_uint8(render_view(scene.parts(i), path.c2w[i], k, supersample=cfg.supersample, background=scene.background))
            bar.advance(task)
        for name, (c2w, _) in cams.items():
            task = bar.add_task(f"ground truth '{name}'", total=p)
            for j in range(p):
                gt_frames[name][j] = to_uint8(render_view(scene.parts_at(j / p, 1.0), c2w, k, supersample=cfg.supersample, background=scene.background))
                bar.advance(task)
        stills = []
        for a, b in path.stills:
            pose = mean_pose(path.c2w[a:b])
            task = bar.add_task(f"true states, still frames {a}-{b - 1}", total=b - a)
            frames = np.empty((b - a, cfg.size, cfg.size, 3), np.uint8)
            for j, f in enumerate(range(a, b)):
                frames[j] = to_uint8(render_view(scene.parts(f), pose, k, supersample=cfg.supersample, background=scene.background))
                bar.advance(task)
            change = np.abs(frames.astype(np.int16) - frames[:1].astype(np.int16)).max(axis=(0, 3))
            stills.append({
                "start": int(a),
                "stop": int(b),
                "c2w": pose,
                "intrinsics": k,
                "frames": frames,
                "times": [f / (n - 1) for f in range(a, b)],
                "phases": [scene.phase(f) for f in range(a, b)],
                "amplitudes": [scene.amplitude(f) for f in range(a, b)],
                "mask": change > MASK_THRESHOLD * 255.0,
            })

    idx = np.arange(n)
    held = idx % cfg.eval_every == cfg.eval_every // 2
    gt = {
        "scene": cfg.scene,
        "seed": cfg.seed,
        "period": p,
        "fps": cfg.fps,
        "frames": n,
        "motion": cfg.motion,
        "still_segments": [[int(a), int(b)] for a, b in path.stills],
        "gt_frame_times": [j / (n - 1) for j in range(p)],
        "background": list(BACKGROUND),
        "box": SCENE_BOX.copy(),
        "cameras": {},
        "stills": stills,
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
    segment was found at). Frame index f shows the state the capture showed at frame f
    (capture time f / (frames - 1)): with periodic motion loop phase (f mod period) /
    period; with natural motion the drifting phase and gusting amplitude of frame f
    (see the module docstring).

    Args:
        config: the capture's settings (scene, period, seed, motion, size, fov, supersample).
        c2w: [4, 4] camera-to-world, OpenGL axes.
        frames: iterable of integer frame indices.
        intrinsics: camera intrinsics (default: the capture's).
    Returns: uint8 [len(frames), H, W, 3].
    """
    from loopnerf.data.images import to_uint8
    from loopnerf.synth.raycast import render_view

    config.check()
    scene = config.make_scene()
    k = intrinsics or config.intrinsics()
    out = [to_uint8(render_view(scene.parts(int(f)), np.asarray(c2w, float), k, supersample=config.supersample, background=scene.background)) for f in frames]
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
        "motion": gt.get("motion", "periodic"),
        "times": "capture time of frame i is i / (frames - 1); "
        + ("the motion repeats every period_frames frames" if gt.get("motion", "periodic") == "periodic"
           else "the motion's tempo drifts and its amplitude gusts: it never repeats exactly "
           "(period_frames is the cycle length at the mean tempo)"),
        "still_segments": gt["still_segments"],
        "gt_frames": "gt/<camera>/%05d.png, k = 0 .. period_frames - 1: the uniform cycle, loop phase "
        "k / period_frames at the mean amplitude (periodic motion: also the scene at frame index k, "
        "capture time k / (frames - 1))",
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
            "intrinsics": k.to_dict(),
            "frames": [f"{name}/{j:05d}.png" for j in range(gt["period"])],
            "mask": f"{name}/mask.png",
            "moving_pixels": int(np.asarray(cam["mask"]).sum()) if "mask" in cam else None,
        }
    meta["stills"] = []
    for i, st in enumerate(gt.get("stills", [])):
        k = st["intrinsics"]
        meta["stills"].append({
            "start": st["start"],
            "stop": st["stop"],
            "description": f"true states of still stretch {i} (frames {st['start']}-{st['stop'] - 1}) at its mean pose",
            "c2w": np.asarray(st["c2w"]).tolist(),
            "intrinsics": k.to_dict(),
            "frames": [f"stills/{i:02d}/{j:05d}.png" for j in range(st["stop"] - st["start"])],
            "times": list(st["times"]),
            "phases": list(st["phases"]),
            "amplitudes": list(st["amplitudes"]),
            "mask": f"stills/{i:02d}/mask.png",
            "moving_pixels": int(np.asarray(st["mask"]).sum()),
        })
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
            "motion": meta["motion"],
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
    for i, st in enumerate(gt.get("stills", [])):
        st_dir = gt_dir / "stills" / f"{i:02d}"
        st_dir.mkdir(parents=True, exist_ok=True)
        for j, frame in enumerate(st["frames"]):
            iio.imwrite(st_dir / f"{j:05d}.png", frame)
        iio.imwrite(st_dir / "mask.png", np.where(st["mask"], 255, 0).astype(np.uint8))
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
    motion: Literal["natural", "periodic"] = "natural",
    tempo_drift: float = 0.15,
    gust: float = 0.3,
    backdrop: Literal["near", "far"] = "near",
    overwrite: bool = False,
) -> int:
    """Render the built-in synthetic capture: a small textured scene with natural motion
    (a tempo that drifts and gusts of amplitude; or exactly periodic), filmed by a
    handheld-style camera that holds still 3-4 times, with ground truth.

    Writes OUT/transforms.json + OUT/images/ (nerfstudio format; every 10th frame from
    frame 5 is held out) and OUT/gt/ (meta.json with the period, the true still stretches
    and 3 test cameras; per camera one uniform cycle of `period` frames at the mean
    amplitude and a moving-pixel mask; per still stretch the true states the capture
    showed, seen from its mean pose). Frame i has capture time i / (frames - 1).

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
        motion: 'natural' (default: the tempo drifts by up to +-tempo_drift and the amplitude
            gusts by up to +-gust, so the motion never repeats exactly, like real footage) or
            'periodic' (repeats exactly every `period` frames).
        tempo_drift: natural motion's peak relative tempo deviation (0.15 = +-15 %).
        gust: natural motion's peak relative amplitude deviation (0.3 = +-30 %).
        backdrop: 'near' (default: a painted wall just inside the scene box and a flat sky)
            or 'far' (no wall: hills and clouds at infinity, a capture that needs an
            unbounded field; `loopnerf train` then picks contraction by itself).
        overwrite: replace an existing non-empty OUT folder.
    """
    cfg = SynthConfig(
        scene=scene, frames=frames, size=size, period=period, seed=seed, fov=fov, fps=fps, supersample=supersample,
        motion=motion, tempo_drift=tempo_drift, gust=gust, backdrop=backdrop,
    )
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
        f"{motion} motion, period {period} frames, still stretches at frames {stills}; ground truth in {out / 'gt'} "
        f"({seconds:.1f} s)"
    )
    return 0
