"""`loopnerf eval RUN`: VideoLoop3D's loop metrics (plus ground truth where there is one).

At the evaluation view (a still segment's averaged pose, by default the longest one):
the stage-1 render over the segment's frame times is the reference video; the loop's F
frames are compared with it: static-region PSNR/SSIM (pixels whose temporal standard
deviation in the reference is under `static_threshold`), STDerr, completeness,
coherence, LoopQ and the seam ratio. For a synthetic capture (`gt/` beside its
transforms.json) each ground-truth camera also gets the best-cyclic-phase PSNR of the
loop against the true period (all pixels and moving pixels) and the static-region PSNR
of the loop and of stage 1. Every loop in the run (`loop`, `naive`) is scored the same
way. Writes RUN/eval.json and RUN/scanlines.png (report Fig. 4.1: one image row over
time for the stage-1 render, the loop played three times, and the loop's depth).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from tyro.conf import Positional

from loopnerf.data.capture import Intrinsics
from loopnerf.distill.loop_model import render_loop_frames
from loopnerf.errors import ConfigError


def loop_metrics(loop: np.ndarray, reference: np.ndarray, static_threshold: float) -> dict:
    """Metrics of a loop [F, H, W, 3] against a reference video [T, H, W, 3] at the same view."""
    from loopnerf.evaluation import metrics as M

    static = reference.std(axis=0).max(axis=-1) < static_threshold
    out = {
        "static_fraction": float(static.mean()),
        "stderr": M.stderr_metric(loop, reference),
        "completeness": M.completeness(loop, reference),
        "coherence": M.coherence(loop, reference),
        "loopq": M.loop_quality(loop, reference),
        "seam_ratio": M.seam_ratio(loop),
        "seam_ratio_moving": M.seam_ratio(loop, mask=~static) if (~static).any() else None,
    }
    if static.any():
        out["static_psnr"] = M.psnr(loop.mean(0), reference.mean(0), mask=static)
        out["static_ssim"] = M.ssim(loop.mean(0), reference.mean(0), mask=static) if min(loop.shape[1:3]) >= 11 else None
    return out


def find_ground_truth(capture_path: str) -> Optional[Path]:
    p = Path(capture_path)
    folder = p if p.is_dir() else p.parent
    gt = folder / "gt" / "meta.json"
    return gt if gt.is_file() else None


def ground_truth_scores(gt_meta: Path, loops: dict, stage1) -> dict:
    """Best-cyclic-phase PSNR of each loop at each ground-truth camera, and static PSNR."""
    import imageio.v3 as iio

    from loopnerf.evaluation import metrics as M
    from loopnerf.model.render_image import render_image

    meta = json.loads(gt_meta.read_text())
    root = gt_meta.parent
    period = int(meta.get("period_frames", meta.get("period", 0)))
    frame_times = meta.get("gt_frame_times")
    out = {}
    for name, cam in meta["cameras"].items():
        k = cam["intrinsics"]
        intr = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], int(k["width"]), int(k["height"]))
        c2w = np.asarray(cam["c2w"], dtype=np.float64)
        truth = np.stack([iio.imread(root / f)[..., :3] for f in cam["frames"]]).astype(np.float32) / 255.0
        moving = iio.imread(root / cam["mask"]) > 127
        if moving.ndim == 3:
            moving = moving[..., 0]
        static = ~moving
        row = {"moving_pixels": int(moving.sum())}
        if frame_times is not None:
            s1 = np.stack([render_image(stage1, c2w, intr, float(t))["rgb"] for t in frame_times])
            row["stage1_psnr"] = M.psnr(s1, truth)
            row["stage1_static_psnr"] = M.psnr(s1.mean(0), truth.mean(0), mask=static)
            if moving.any():
                row["stage1_moving_psnr"] = M.psnr(s1, truth, mask=np.broadcast_to(moving, s1.shape[:3]))
        for loop_name, model in loops.items():
            lp = render_loop_frames(model, c2w, intr, model.frames)
            r = {"best_phase_psnr": M.best_cyclic_phase_psnr(lp, truth)}
            if moving.any():
                r["best_phase_psnr_moving"] = M.best_cyclic_phase_psnr(lp, truth, mask=moving)
            r["static_psnr"] = M.psnr(lp.mean(0), truth.mean(0), mask=static)
            r["seam_ratio"] = M.seam_ratio(lp)
            row[loop_name] = r
        out[name] = row
    return {"period_frames": period, "cameras": out}


def scanline_figure(path: Path, stage1_video: np.ndarray, loop: np.ndarray, loop_depth: np.ndarray, row: int, cycles: int = 3) -> None:
    """Report Fig. 4.1: image row `row` stacked over time, for stage 1, the loop (played
    `cycles` times, seams marked) and the loop's depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    played = np.concatenate([loop] * cycles)
    depth = np.concatenate([loop_depth] * cycles)
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2))
    axes[0].imshow(np.clip(stage1_video[:, row], 0, 1), aspect="auto", interpolation="nearest")
    axes[0].set_title("stage 1 (segment video)")
    axes[1].imshow(np.clip(played[:, row], 0, 1), aspect="auto", interpolation="nearest")
    axes[1].set_title(f"loop x{cycles} (F = {len(loop)})")
    d = depth[:, row]
    axes[2].imshow(d, aspect="auto", cmap="turbo_r", interpolation="nearest", vmin=np.percentile(d, 1), vmax=np.percentile(d, 99))
    axes[2].set_title("loop depth")
    for ax in axes[1:]:
        for c in range(1, cycles):
            ax.axhline(c * len(loop) - 0.5, color="w", lw=0.8, ls="--")
    for ax in axes:
        ax.set_xlabel("x (pixels)")
    axes[0].set_ylabel("time (frames)")
    fig.suptitle(f"scanline y = {row} over time")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def camera_file_view(path: Path, stage1):
    """A `SegmentVideo`-like view from a camera file: the first camera's pose and
    intrinsics, and the stage-1 render there at every `time` of the file (the reference)."""
    from loopnerf.data.camera_file import load_cameras
    from loopnerf.distill.segment_videos import SegmentVideo
    from loopnerf.model.render_image import render_image

    cams = load_cameras(path)
    pose, intr = cams.c2w[0], cams.intrinsics[0]
    frames = np.stack([render_image(stage1, pose, intr, float(t))["rgb"] for t in cams.times])
    return SegmentVideo(-1, frames, pose, intr, cams.times)


def evaluate_run(run: Path, segment: Optional[int] = None, static_threshold: float = 0.02, ground_truth: bool = True, cameras: Optional[Path] = None) -> dict:
    """Compute every metric of `loopnerf eval` and write RUN/eval.json + RUN/scanlines.png."""
    from loopnerf.distill.loop_model import load_loop_model
    from loopnerf.distill.segment_videos import render_segment_videos
    from loopnerf.model.config import save_json_atomic
    from loopnerf.model.train import load_stage1

    run = Path(run)
    stage1, info = load_stage1(run)
    if cameras is not None:
        view = camera_file_view(cameras, stage1)
        segment = -1
    else:
        videos = render_segment_videos(run, stage1, quiet=True)
        if segment is None:
            segment = int(np.argmax([len(v.frames) for v in videos]))
        if not 0 <= segment < len(videos):
            raise ConfigError(f"--segment {segment}: the run has segments 0..{len(videos) - 1}")
        view = videos[segment]
    loops = {}
    for name in ("loop", "naive"):
        if (run / name / "config.json").is_file():
            loops[name], _ = load_loop_model(run, name)
    if not loops:
        raise ConfigError(f"{run}: no loop to evaluate; run `loopnerf distill {run}` first")
    result = {"view": {"segment": segment, "cameras": None if cameras is None else str(cameras), "frames": int(len(view.frames))}, "loops": {}}
    loop_frames = {}
    for name, model in loops.items():
        rgb, depth = render_loop_frames(model, view.pose, view.intrinsics, model.frames, depth=True)
        loop_frames[name] = (rgb, depth)
        result["loops"][name] = {"frames": model.frames, "time_parameters": model.parameter_count()["time_dependent"], **loop_metrics(rgb, view.frames, static_threshold)}
    result["stage1_time_parameters"] = stage1.parameter_count()["time_dependent"]
    gt = find_ground_truth(info["capture"]) if ground_truth else None
    if gt is not None:
        result["ground_truth"] = ground_truth_scores(gt, loops, stage1)
    main = "loop" if "loop" in loop_frames else next(iter(loop_frames))
    moving_rows = view.frames.std(axis=0).max(axis=-1).mean(axis=1)
    row = int(np.argmax(moving_rows))
    scanline_figure(run / "scanlines.png", view.frames, *loop_frames[main], row)
    result["scanline_row"] = row
    save_json_atomic(run / "eval.json", result)
    return result


def eval_command(
    run: Positional[Path],
    segment: Optional[int] = None,
    static_threshold: float = 0.02,
    ground_truth: bool = True,
    cameras: Optional[Path] = None,
) -> int:
    """Score RUN's loops (RUN/loop, RUN/naive) with VideoLoop3D's metrics; write RUN/eval.json
    and RUN/scanlines.png.

    Args:
        run: the run directory (stage 1, segments and at least one distilled loop).
        segment: index of the still segment whose pose is the evaluation view (default: the longest).
        static_threshold: a pixel is static when its temporal standard deviation in the
            reference video is below this (colour units in [0, 1]).
        ground_truth: also score against a synthetic capture's gt/ folder when there is one.
        cameras: evaluate at a camera file's first camera instead of a segment; the stage-1
            render there at every `time` of the file is the reference video.
    """
    from rich.console import Console
    from rich.table import Table

    res = evaluate_run(run, segment, static_threshold, ground_truth, cameras)
    where = f"camera file {cameras}" if cameras is not None else f"segment {res['view']['segment']}"
    table = Table(title=f"loop metrics at {where} ({Path(run) / 'eval.json'})")
    keys = ["static_psnr", "stderr", "completeness", "coherence", "loopq", "seam_ratio"]
    table.add_column("loop")
    for k in keys:
        table.add_column(k)
    for name, m in res["loops"].items():
        table.add_row(name, *[("-" if m.get(k) is None else f"{m[k]:.4g}") for k in keys])
    Console().print(table)
    if "ground_truth" in res:
        t2 = Table(title="against ground truth (best cyclic phase PSNR, dB)")
        t2.add_column("camera")
        t2.add_column("stage 1 static")
        names = list(res["loops"])
        for n in names:
            t2.add_column(f"{n}: all / moving / static")
        for cam, row in res["ground_truth"]["cameras"].items():
            cells = [cam, f"{row.get('stage1_static_psnr', float('nan')):.2f}"]
            for n in names:
                r = row[n]
                cells.append(f"{r['best_phase_psnr']:.2f} / {r.get('best_phase_psnr_moving', float('nan')):.2f} / {r['static_psnr']:.2f}")
            t2.add_row(*cells)
        Console().print(t2)
    return 0
