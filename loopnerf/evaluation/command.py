"""`loopnerf eval RUN`: VideoLoop3D's loop metrics (plus ground truth where there is one).

At the evaluation view (a still segment's averaged pose, by default the longest one):
the stage-1 render over the segment's frame times is the reference video; the loop's F
frames are compared with it: static-region PSNR/SSIM (pixels whose temporal standard
deviation in the reference is under `static_threshold`), STDerr, completeness,
coherence, LoopQ, the seam ratio and the motion ratio (mean temporal std of the loop's
moving pixels ÷ the reference's). For a synthetic capture (`gt/` beside its
transforms.json):
- each ground-truth camera (supervised / novel / extrapolated) gets the best-cyclic-phase
  PSNR of each loop against the true uniform cycle (all pixels and moving pixels), its
  motion ratio against that cycle, and the static-region PSNR of the loops and stage 1;
- each still stretch of the capture (`gt/stills/NN`, the true states the capture showed,
  seen from the stretch's mean pose) gets, for stage 1 (rendered at the stretch's frame
  times), the loop and the naive baseline: the motion ratio against the true states,
  coherence and completeness against them (the loops played circularly, stage 1 as the
  video it is), the static-region PSNR against the truth and against the stage-1 render,
  and for stage 1 the PSNR of its moving pixels frame by frame;
- at the supervised camera, `references` for the best-phase PSNR of the moving pixels:
  loops made from the true states (standing still at their mean, every window of P
  consecutive states) and every window of P consecutive stage-1 frames scored as a loop
  (the figure the loop distilled from stage 1 compares with in the loop's own metric).
Every loop in the run (`loop`, `naive`) is scored the same way. Writes RUN/eval.json and
RUN/scanlines.png (report Fig. 4.1: one image row over time for the true states where
known, the stage-1 render, the loops played three times, and the loop's depth).
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
        "motion_ratio": M.motion_ratio(loop, reference, mask=~static) if (~static).any() else None,
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


def _read_frames(root: Path, files) -> np.ndarray:
    """[N, H, W, 3] float32 in [0, 1] from PNG files under `root`."""
    import imageio.v3 as iio

    return np.stack([iio.imread(root / f)[..., :3] for f in files]).astype(np.float32) / 255.0


def _read_mask(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    m = iio.imread(path) > 127
    return m[..., 0] if m.ndim == 3 else m


def still_scores(truth: np.ndarray, moving: np.ndarray, stage1_video: np.ndarray, loops: dict) -> dict:
    """Scores at one still stretch's camera against the true states the capture showed.

    truth [T, H, W, 3] (the true states, frame by frame), moving [H, W] bool (pixels that
    change), stage1_video [T, H, W, 3] (stage 1 rendered at the same frame times), loops:
    name -> [F, H, W, 3] loop frames at that camera. Returns {"moving_pixels", "stage1":
    {...}, name: {...}} with, per entry, `motion_ratio` (vs truth, moving pixels),
    `coherence` / `completeness` (vs truth; loops played circularly), `static_psnr` (mean
    image vs the truth's mean image on the static pixels) and for loops
    `static_psnr_vs_stage1` (vs the stage-1 render's mean image); stage 1 also gets
    `moving_psnr` (frame by frame against the true states, moving pixels).
    """
    from loopnerf.evaluation import metrics as M

    static = ~moving
    has_motion = bool(moving.any())
    s1 = {
        "static_psnr": M.psnr(stage1_video.mean(0), truth.mean(0), mask=static),
        "coherence": M.video_coherence(stage1_video, truth),
        "completeness": M.video_completeness(stage1_video, truth),
    }
    if has_motion:
        s1["moving_psnr"] = M.psnr(stage1_video, truth, mask=np.broadcast_to(moving, truth.shape[:3]))
        s1["motion_ratio"] = M.motion_ratio(stage1_video, truth, mask=moving)
    row = {"moving_pixels": int(moving.sum()), "stage1": s1}
    for name, lp in loops.items():
        r = {
            "static_psnr": M.psnr(lp.mean(0), truth.mean(0), mask=static),
            "static_psnr_vs_stage1": M.psnr(lp.mean(0), stage1_video.mean(0), mask=static),
            "coherence": M.coherence(lp, truth),
            "completeness": M.completeness(lp, truth),
        }
        if has_motion:
            r["motion_ratio"] = M.motion_ratio(lp, truth, mask=moving)
        row[name] = r
    return row


POSE_MATCH = 1e-4
"""Largest camera-to-world entry difference under which a segment video counts as the
same camera as a still stretch (segment poses average the stretch's frames: 1e-5 off on
the tiny demo, a thousandth of a pixel)."""


def _same_camera(video, c2w: np.ndarray, intr: Intrinsics) -> bool:
    """Whether a segment video looks from this camera (then its frames are stage 1's
    render there, already made for distillation)."""
    return video.intrinsics == intr and np.abs(np.asarray(video.pose, np.float64) - c2w).max() < POSE_MATCH


def _stage1_frames(stage1, c2w: np.ndarray, intr: Intrinsics, times, videos) -> np.ndarray:
    """[T, H, W, 3] stage 1 rendered at c2w at each time, taken from a segment video of
    the same camera where it has that time (`_same_camera`), rendered otherwise."""
    from loopnerf.model.render_image import render_image

    same = [v for v in videos if _same_camera(v, c2w, intr)]
    frames = []
    for t in times:
        hit = None
        for v in same:
            j = np.flatnonzero(np.abs(np.asarray(v.times, np.float64) - float(t)) < 1e-9)
            if len(j):
                hit = v.frames[int(j[0])]
                break
        frames.append(hit if hit is not None else render_image(stage1, c2w, intr, float(t))["rgb"])
    return np.stack(frames).astype(np.float32)


def ground_truth_scores(gt_meta: Path, loops: dict, stage1, stills: bool = True, stage1_videos=()) -> dict:
    """Scores against a synthetic capture's ground truth (see the module docstring).

    `stage1_videos`: segment videos (`SegmentVideo`); at a still stretch one of them
    shows from the same camera, stage 1's render of each time the video has is taken
    from it instead of rendered again (the demo's four stills: 167 renders, about 36 s).

    Returns {"period_frames", "motion", "cameras": name -> {...}, "stills": [...],
    "supervised_still": index of the still stretch whose mean pose is the supervised
    camera (or None)}.
    """
    from loopnerf.evaluation import metrics as M
    from loopnerf.model.render_image import render_video

    meta = json.loads(gt_meta.read_text())
    root = gt_meta.parent
    period = int(meta.get("period_frames", meta.get("period", 0)))
    motion = meta.get("motion", "periodic")
    frame_times = meta.get("gt_frame_times")
    loop_renders: dict = {}

    def render_loops(key, c2w, intr):
        if key not in loop_renders:
            loop_renders[key] = {n: render_loop_frames(m, c2w, intr, m.frames) for n, m in loops.items()}
        return loop_renders[key]

    out = {}
    cycles = {}  # camera name -> (true cycle, moving mask)
    for name, cam in meta["cameras"].items():
        intr = Intrinsics.from_dict(cam["intrinsics"])
        c2w = np.asarray(cam["c2w"], dtype=np.float64)
        truth = _read_frames(root, cam["frames"])
        moving = _read_mask(root / cam["mask"])
        cycles[name] = (truth, moving)
        static = ~moving
        row = {"moving_pixels": int(moving.sum())}
        if frame_times is not None:
            # static pixels do not depend on time: any P times score the static region
            s1 = render_video(stage1, c2w, intr, frame_times)
            row["stage1_static_psnr"] = M.psnr(s1.mean(0), truth.mean(0), mask=static)
            if motion == "periodic":  # gt frame k is then the state of capture frame k
                row["stage1_psnr"] = M.psnr(s1, truth)
                if moving.any():
                    row["stage1_moving_psnr"] = M.psnr(s1, truth, mask=np.broadcast_to(moving, s1.shape[:3]))
        for loop_name, lp in render_loops(name, c2w, intr).items():
            r = {"best_phase_psnr": M.best_cyclic_phase_psnr(lp, truth)}
            if moving.any():
                r["best_phase_psnr_moving"] = M.best_cyclic_phase_psnr(lp, truth, mask=moving)
                r["motion_ratio"] = M.motion_ratio(lp, truth, mask=moving)
            r["static_psnr"] = M.psnr(lp.mean(0), truth.mean(0), mask=static)
            r["seam_ratio"] = M.seam_ratio(lp)
            row[loop_name] = r
        out[name] = row
    still_rows = []
    supervised = None
    sup_c2w = np.asarray(meta["cameras"]["supervised"]["c2w"]) if "supervised" in meta["cameras"] else None
    for i, st in enumerate(meta.get("stills", []) if stills else []):
        intr = Intrinsics.from_dict(st["intrinsics"])
        c2w = np.asarray(st["c2w"], dtype=np.float64)
        truth = _read_frames(root, st["frames"])
        moving = _read_mask(root / st["mask"])
        s1 = _stage1_frames(stage1, c2w, intr, st["times"], stage1_videos)
        row = {"index": i, "start": int(st["start"]), "stop": int(st["stop"])}
        row.update(still_scores(truth, moving, s1, render_loops(("still", i), c2w, intr)))
        still_rows.append(row)
        if sup_c2w is not None and np.abs(sup_c2w - c2w).max() < 1e-9:
            supervised = i
            out["supervised"]["references"] = cycle_references(truth, *cycles["supervised"], period, stage1_video=s1)
    return {"period_frames": period, "motion": motion, "cameras": out, "stills": still_rows, "supervised_still": supervised}


def cycle_references(states: np.ndarray, cycle: np.ndarray, moving: np.ndarray, frames: int, stage1_video: Optional[np.ndarray] = None) -> dict:
    """What the best-phase PSNR of the moving pixels against the true cycle means: the
    scores of two loops made from the true states a still camera saw (states [T, H, W, 3]),
    against the true cycle (cycle [P, H, W, 3]) on the moving pixels (moving [H, W]).

    "standing_still": the mean state repeated (a loop with no motion at all);
    "true_windows_mean" / "_min" / "_max": every window of `frames` consecutive true
    states as a loop (a loop copied from the capture itself; the drifting tempo keeps
    it under the cycle's own score);
    "stage1_windows_mean" / "_min" / "_max" (with `stage1_video` [T, H, W, 3], stage 1
    rendered at the same frames): every window of `frames` consecutive stage-1 frames as
    a loop, stage 1 scored the way a loop is (the figure a loop distilled from it is
    compared with; stage 1's PSNR frame by frame against the states is another metric).
    {} when the stretch is too short or nothing moves."""
    from loopnerf.evaluation import metrics as M

    if not moving.any() or len(states) < frames or frames < 1:
        return {}
    if stage1_video is not None and stage1_video.shape != states.shape:
        raise ValueError(f"stage-1 video {stage1_video.shape} and true states {states.shape} differ in shape")

    def windows(video: np.ndarray, name: str) -> dict:
        scores = [M.best_cyclic_phase_psnr(video[a : a + frames], cycle, mask=moving) for a in range(len(video) - frames + 1)]
        return {f"{name}_mean": float(np.mean(scores)), f"{name}_min": float(min(scores)), f"{name}_max": float(max(scores))}

    still = np.repeat(states.mean(0, keepdims=True), frames, axis=0)
    out = {"standing_still": M.best_cyclic_phase_psnr(still, cycle, mask=moving), **windows(states, "true_windows")}
    if stage1_video is not None:
        out.update(windows(stage1_video, "stage1_windows"))
    return out


def gt_still_for_segment(gt_meta: Path, start: int, stop: int) -> Optional[np.ndarray]:
    """The true states [stop - start, H, W, 3] at the still stretch that overlaps frames
    [start, stop) most (None when no stretch overlaps): frame j is capture frame start + j
    where the stretch has it, else the stretch's nearest frame."""
    meta = json.loads(gt_meta.read_text())
    best, overlap = None, 0
    for st in meta.get("stills", []):
        o = min(stop, st["stop"]) - max(start, st["start"])
        if o > overlap:
            best, overlap = st, o
    if best is None:
        return None
    idx = np.clip(np.arange(start, stop) - best["start"], 0, best["stop"] - best["start"] - 1)
    return _read_frames(gt_meta.parent, [best["frames"][j] for j in idx])


def scanline_figure(
    path: Path,
    stage1_video: np.ndarray,
    loop: np.ndarray,
    loop_depth: np.ndarray,
    row: int,
    cycles: int = 3,
    *,
    truth: Optional[np.ndarray] = None,
    others: Optional[dict] = None,
) -> None:
    """Report Fig. 4.1: image row `row` stacked over time (time runs down).

    Panels, left to right: the true states the capture showed (`truth` [T, H, W, 3], when
    known), the stage-1 segment video [T, H, W, 3], the loop [F, H, W, 3] played `cycles`
    times (seams dashed), each of `others` (name -> [F', H, W, 3], e.g. the naive
    baseline) played the same way, and the loop's depth [F, H, W]. Colours in [0, 1].
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []  # (title, image [rows, W, 3] or depth [rows, W], seam period or 0)
    if truth is not None:
        panels.append(("truth (capture states)", truth[:, row], 0))
    panels.append(("stage 1 (segment video)", stage1_video[:, row], 0))
    panels.append((f"loop x{cycles} (F = {len(loop)})", np.concatenate([loop] * cycles)[:, row], len(loop)))
    for name, video in (others or {}).items():
        panels.append((f"{name} x{cycles}", np.concatenate([video] * cycles)[:, row], len(video)))
    panels.append(("loop depth", np.concatenate([loop_depth] * cycles)[:, row], len(loop)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.4, 4.2))
    for ax, (title, img, seam) in zip(axes, panels):
        if img.ndim == 2:
            ax.imshow(img, aspect="auto", cmap="turbo_r", interpolation="nearest", vmin=np.percentile(img, 1), vmax=np.percentile(img, 99))
        else:
            ax.imshow(np.clip(img, 0, 1), aspect="auto", interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x (pixels)")
        for c in range(1, cycles if seam else 0):
            ax.axhline(c * seam - 0.5, color="w", lw=0.8, ls="--")
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
    from loopnerf.model.render_image import render_video

    cams = load_cameras(path)
    pose, intr = cams.c2w[0], cams.intrinsics[0]
    frames = render_video(stage1, pose, intr, cams.times)
    return SegmentVideo(-1, frames, pose, intr, cams.times)


def evaluate_run(
    run: Path,
    segment: Optional[int] = None,
    static_threshold: float = 0.02,
    ground_truth: bool = True,
    cameras: Optional[Path] = None,
    stills: bool = True,
) -> dict:
    """Compute every metric of `loopnerf eval` and write RUN/eval.json + RUN/scanlines.png.

    `stills=False` skips the still-stretch ground-truth scores (they render stage 1 at
    every still frame)."""
    from loopnerf.distill.segment_videos import render_segment_videos
    from loopnerf.json_file import save_json_atomic
    from loopnerf.run_folder import RunFolder

    folder = RunFolder(run)
    run = folder.path
    stage1, info = folder.load_stage1()
    videos = []
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
    for name in folder.loop_methods():
        loops[name], _ = folder.load_loop_model(name)
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
    truth = None
    if gt is not None:
        result["ground_truth"] = ground_truth_scores(gt, loops, stage1, stills=stills, stage1_videos=videos)
        if cameras is None:
            seg = folder.read_segments().segments[segment]
            truth = gt_still_for_segment(gt, seg.start, seg.stop)
            if truth is not None and truth.shape[1:] != view.frames.shape[1:]:
                truth = None
    main = "loop" if "loop" in loop_frames else next(iter(loop_frames))
    # the row that moves most: in the truth where there is one, else in the reference
    moving_rows = (truth if truth is not None else view.frames).std(axis=0).max(axis=-1).mean(axis=1)
    row = int(np.argmax(moving_rows))
    others = {n: f[0] for n, f in loop_frames.items() if n != main}
    scanline_figure(folder.scanlines_png, view.frames, *loop_frames[main], row, truth=truth, others=others)
    result["scanline_row"] = row
    save_json_atomic(folder.eval_path, result)
    return result


def eval_command(
    run: Positional[Path],
    segment: Optional[int] = None,
    static_threshold: float = 0.02,
    ground_truth: bool = True,
    cameras: Optional[Path] = None,
    stills: bool = True,
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
        stills: with ground truth, also score every still stretch against the true states
            the capture showed there (renders stage 1 at every still frame).
    """
    from rich.console import Console
    from rich.table import Table

    res = evaluate_run(run, segment, static_threshold, ground_truth, cameras, stills)
    where = f"camera file {cameras}" if cameras is not None else f"segment {res['view']['segment']}"
    from loopnerf.run_folder import RunFolder

    table = Table(title=f"loop metrics at {where} ({RunFolder(run).eval_path})")
    keys = ["static_psnr", "stderr", "completeness", "coherence", "loopq", "seam_ratio", "motion_ratio"]
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
        if res["ground_truth"].get("stills"):
            t3 = Table(title="at the still stretches, against the true states (motion ratio / coherence / completeness / static PSNR dB)")
            t3.add_column("still (frames)")
            for n in ["stage1", *names]:
                t3.add_column(n)
            for st in res["ground_truth"]["stills"]:
                cells = [f"{st['index']} ({st['start']}-{st['stop'] - 1})"]
                for n in ["stage1", *names]:
                    r = st[n]
                    cells.append(f"{r.get('motion_ratio', float('nan')):.2f} / {r['coherence']:.4f} / {r['completeness']:.4f} / {r['static_psnr']:.2f}")
                t3.add_row(*cells)
            Console().print(t3)
        ref = res["ground_truth"]["cameras"].get("supervised", {}).get("references") or {}
        if ref:
            line = (f"for scale, moving pixels at the supervised camera against the true cycle (best phase): "
                    f"the mean true state standing still {ref['standing_still']:.2f} dB, true {res['ground_truth']['period_frames']}-frame "
                    f"windows {ref['true_windows_min']:.2f}-{ref['true_windows_max']:.2f} dB")
            if "stage1_windows_mean" in ref:
                line += (f", stage 1's own windows {ref['stage1_windows_min']:.2f}-{ref['stage1_windows_max']:.2f} dB "
                         f"(mean {ref['stage1_windows_mean']:.2f})")
            Console().print(line)
    return 0
