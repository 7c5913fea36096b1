"""Segment videos (report §3.3, DESIGN §5.2): the stage-1 field rendered at each still
segment's averaged pose for every frame time of that segment.

These "asynchronous static videos" supervise the loop. Written to
`RUN/segments/NN.npy` (float16 [T, H, W, 3] in [0, 1], the exact frames distillation
reads) and `RUN/segments/NN.mp4` (for people).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loopnerf.data.capture import Intrinsics
from loopnerf.errors import ConfigError


@dataclass
class SegmentVideo:
    """One still segment's video: frames [T, H, W, 3] float32, pose [4, 4], intrinsics, times [T]."""

    index: int
    frames: np.ndarray
    pose: np.ndarray
    intrinsics: Intrinsics
    times: np.ndarray


def read_segments(run: Path) -> list[dict]:
    path = Path(run) / "segments.json"
    if not path.is_file():
        raise ConfigError(f"{run}: no segments.json; run `loopnerf select {run}` first")
    segs = json.loads(path.read_text()).get("segments", [])
    if not segs:
        raise ConfigError(f"{path}: holds no still segment; rerun `loopnerf select` with relaxed thresholds")
    return segs


def render_segment_videos(run: Path, model=None, *, fps: float = 24.0, quiet: bool = False, force: bool = False) -> list[SegmentVideo]:
    """Render (or reuse, unless `force`) every segment's video from the stage-1 field."""
    from rich.progress import Progress

    from loopnerf.model.render_image import render_image
    from loopnerf.video import write_video

    run = Path(run)
    segs = read_segments(run)
    out_dir = run / "segments"
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = []
    todo = [i for i in range(len(segs)) if force or not (out_dir / f"{i:02d}.npy").is_file()]
    if todo and model is None:
        from loopnerf.model.train import load_stage1

        model, _ = load_stage1(run)
    total = sum(len(segs[i]["times"]) for i in todo)
    with Progress(disable=quiet or not todo, transient=True) as bar:
        task = bar.add_task("segment videos", total=total)
        for i, seg in enumerate(segs):
            k = seg["intrinsics"]
            intr = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], int(k["width"]), int(k["height"]))
            pose = np.asarray(seg["pose"], dtype=np.float64)
            times = np.asarray(seg["times"], dtype=np.float64)
            npy = out_dir / f"{i:02d}.npy"
            if i in todo:
                frames = []
                for t in times:
                    frames.append(render_image(model, pose, intr, float(t))["rgb"])
                    bar.advance(task)
                frames = np.stack(frames).astype(np.float16)
                tmp = out_dir / f"{i:02d}.tmp.npy"
                np.save(tmp, frames)
                tmp.replace(npy)
                write_video(out_dir / f"{i:02d}.mp4", [(np.clip(f.astype(np.float32), 0, 1) * 255).astype(np.uint8) for f in frames], fps)
            frames = np.load(npy, allow_pickle=False).astype(np.float32)
            videos.append(SegmentVideo(i, frames, pose, intr, times))
    return videos
