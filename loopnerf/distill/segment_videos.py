"""Segment videos (report §3.3, DESIGN §5.2): the stage-1 field rendered at each still
segment's averaged pose for every frame time of that segment.

These "asynchronous static videos" supervise the loop. Written as float16 [T, H, W, 3]
arrays in [0, 1] (the exact frames distillation reads) and as mp4s for people, where
`RunFolder.segment_video` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loopnerf.data.capture import Intrinsics
from loopnerf.run_folder import RunFolder


@dataclass
class SegmentVideo:
    """One still segment's video: frames [T, H, W, 3] float32, pose [4, 4], intrinsics, times [T]."""

    index: int
    frames: np.ndarray
    pose: np.ndarray
    intrinsics: Intrinsics
    times: np.ndarray


def render_segment_videos(run: Path, model=None, *, fps: float = 24.0, quiet: bool = False, force: bool = False) -> list[SegmentVideo]:
    """Render (or reuse, unless `force`) every segment's video from the stage-1 field."""
    from rich.progress import Progress

    from loopnerf.model.render_image import render_video
    from loopnerf.video import write_video

    folder = RunFolder(run)
    segs = folder.read_segments().segments
    folder.segment_video_dir.mkdir(parents=True, exist_ok=True)
    videos = []
    todo = [i for i in range(len(segs)) if force or not folder.segment_video(i).is_file()]
    if todo and model is None:
        model, _ = folder.load_stage1()
    total = sum(len(segs[i]) for i in todo)
    with Progress(disable=quiet or not todo, transient=True) as bar:
        task = bar.add_task("segment videos", total=total)
        for i, seg in enumerate(segs):
            npy = folder.segment_video(i)
            if i in todo:
                # the rays that never meet the dynamic region are rendered once
                frames = render_video(model, seg.pose, seg.intrinsics, seg.times).astype(np.float16)
                bar.advance(task, len(seg.times))
                tmp = npy.with_suffix(".tmp.npy")
                np.save(tmp, frames)
                tmp.replace(npy)
                write_video(folder.segment_video(i, ".mp4"), [(np.clip(f.astype(np.float32), 0, 1) * 255).astype(np.uint8) for f in frames], fps)
            frames = np.load(npy, allow_pickle=False).astype(np.float32)
            videos.append(SegmentVideo(i, frames, seg.pose, seg.intrinsics, seg.times))
    return videos
