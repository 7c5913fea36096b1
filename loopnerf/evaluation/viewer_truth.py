"""What the viewer shows, scored against the synthetic scene's truth.

The loop model's own renders are scored in `command.py`; a user sees the baked
`.loop` drawn by the viewer (`loopnerf.viewer.Renderer`), after fp16 baking and
visibility culling. These scores use exactly those images:

- `orbit_static_psnr`: a camera path (the demo's novel orbit) against the true scene
  at the same poses, PSNR on each frame's static region (pixels no moving part can
  cover), per frame, mean and worst;
- `viewer_truth_table`: at each ground-truth camera of the capture (gt/meta.json:
  supervised, novel, extrapolated) the viewer's F loop frames against the truth's P
  frames: static-region PSNR of the mean images (as for the loop model) and, when
  best-cyclic-phase PSNR over all and over the moving pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loopnerf.data.capture import Intrinsics


def orbit_static_psnr(frames: np.ndarray, truth: np.ndarray, moving: np.ndarray) -> dict:
    """frames, truth uint8 [N, H, W, 3]; moving bool [N, H, W]. PSNR (dB) of each frame
    on its static pixels -> {"per_frame": [...], "mean", "worst", "static_fraction"}."""
    from loopnerf.evaluation import metrics as M

    a = np.asarray(frames, dtype=np.float32) / 255.0
    b = np.asarray(truth, dtype=np.float32) / 255.0
    per = [float(M.psnr(a[i], b[i], mask=~moving[i])) for i in range(len(a))]
    return {"per_frame": [round(v, 2) for v in per], "mean": float(np.mean(per)), "worst": float(np.min(per)),
            "static_fraction": float((~moving).mean())}


def viewer_truth_table(renderer, cap_dir: Path, meta: dict) -> dict:
    """Scores of what `renderer` (a viewer `Renderer` of the baked loop) draws at each gt
    camera of the capture in `cap_dir` -> {camera: {"static_psnr", "best_phase_psnr",
    "best_phase_psnr_moving"}}."""
    import imageio.v3 as iio

    from loopnerf.evaluation import metrics as M

    F = renderer.frames
    out = {}
    for name, cam in meta["cameras"].items():
        k = Intrinsics.from_dict(cam["intrinsics"])
        truth = np.stack([iio.imread(Path(cap_dir) / "gt" / f)[..., :3] for f in cam["frames"]]).astype(np.float32) / 255.0
        moving = iio.imread(Path(cap_dir) / "gt" / cam["mask"]) > 127
        if moving.ndim == 3:
            moving = moving[..., 0]
        c2w = np.asarray(cam["c2w"], dtype=np.float32)
        loop = np.stack([renderer.render_phase(c2w, i / F, intrinsics=k)[0] for i in range(F)]).astype(np.float32) / 255.0
        row = {"static_psnr": float(M.psnr(loop.mean(0), truth.mean(0), mask=~moving)),
               "best_phase_psnr": float(M.best_cyclic_phase_psnr(loop, truth))}
        if moving.any():
            row["best_phase_psnr_moving"] = float(M.best_cyclic_phase_psnr(loop, truth, mask=moving))
        out[name] = row
    return out


def orbit_poses(baked, size: int, seconds: float, cycles_min: int = 3):
    """The demo's novel orbit of a baked loop: (poses [N] of [4, 4], Intrinsics, fps).

    N = max(seconds * fps, cycles_min * F) views of a slow orbit around the default
    camera (`orbit_camera.orbit_path`), at `size` pixels wide (the default camera's
    aspect); view i shows playback time i / fps."""
    from loopnerf.viewer.orbit_camera import orbit_path
    from loopnerf.viewer.renderer import Renderer

    fps = float(baked.fps)
    n = max(int(round(seconds * fps)), cycles_min * baked.frames)
    poses = orbit_path(baked.camera["c2w"], baked.box, baked.up, n)
    cam = baked.camera
    h = int(round(size * cam["height"] / cam["width"]))
    return poses, Renderer.intrinsics_of(baked, size, h), fps


def viewer_truth_lines(result: dict) -> list[str]:
    """report.md lines for `result` = {"orbit": orbit_static_psnr(...), "cameras":
    viewer_truth_table(...), "renderer": `Renderer.describe()`} (the demo's
    viewer_truth.json)."""
    orbit = result["orbit"]
    lines = ["## What the viewer shows, against the truth", "",
             "The visibility-culled `scene.loop` as `loopnerf view` draws it "
             f"({result.get('renderer', 'the default renderer')}), scored against the synthetic scene's own renders.", "",
             f"**Novel orbit** (`loop.mp4`, {len(orbit['per_frame'])} frames, static region = pixels no moving part "
             f"can cover, {orbit['static_fraction']:.0%} of the image): static PSNR mean **{orbit['mean']:.2f} dB**, "
             f"worst frame **{orbit['worst']:.2f} dB**.", "",
             "Per frame (dB): " + ", ".join(f"{v:.1f}" for v in orbit["per_frame"]), "",
             "| camera | static PSNR (mean images) | best-phase PSNR all / moving |", "|---|---|---|"]
    for cam, row in result["cameras"].items():
        lines.append(f"| {cam} | {row['static_psnr']:.2f} | {row['best_phase_psnr']:.2f} / "
                     f"{row.get('best_phase_psnr_moving', float('nan')):.2f} |")
    lines.append("")
    return lines
