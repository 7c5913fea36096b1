"""Frame extraction: decode a video into numbered PNG files for structure-from-motion.

Frames are streamed (never the whole video in memory): each selected frame is
downscaled, scored for sharpness and written to `image_dir/f{index:06d}.png`, where
`index` is its position in the original video, so every later step can map a file
back to the frame's original time `index / fps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from loopnerf.errors import CaptureError


@dataclass
class ExtractedFrames:
    """Frames written for structure-from-motion.

    Attributes:
        names: file names (in `image_dir`) in video order.
        frame_index: [N] int64 index of each frame in the original video.
        sharpness: [N] float64 variance of the Laplacian (see `sharpness`).
        video_fps: frame rate of the video (frames per second).
        video_frames: frames decoded from the video (the last one read, + 1).
        width, height: size of the written images in pixels.
        source_size: (width, height) of the video itself.
    """

    names: list
    frame_index: np.ndarray
    sharpness: np.ndarray
    video_fps: float
    video_frames: int
    width: int
    height: int
    source_size: tuple


def video_info(path: Path) -> tuple[float, Optional[int], tuple[int, int]]:
    """(fps, estimated frame count or None, (width, height)) of a video; `CaptureError`
    naming the file when it is missing or not a video."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"{path}: video file does not exist")
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except Exception as err:  # imageio-ffmpeg raises several types for non-videos
        raise CaptureError(f"{path}: cannot read as a video: {err}") from None
    fps = float(meta.get("fps") or 0.0)
    if not np.isfinite(fps) or fps <= 0:
        raise CaptureError(f"{path}: the video has no frame rate (field 'fps' in its metadata)")
    duration = meta.get("duration")
    count = None
    if duration and np.isfinite(duration):
        count = int(round(float(duration) * fps))
    size = tuple(int(v) for v in meta.get("size", (0, 0)))
    return fps, count, size


def sample_frame(index: int, video_fps: float, target_fps: Optional[float]) -> bool:
    """Whether frame `index` is kept when sampling `video_fps` down to `target_fps`
    (None or >= video_fps = every frame): a frame is kept when it is the first one at or
    after a multiple of 1 / target_fps seconds."""
    if target_fps is None or target_fps >= video_fps:
        return True
    step = video_fps / target_fps  # video frames per kept frame (> 1)
    return int(np.floor(index / step)) != int(np.floor((index - 1) / step)) or index == 0


def downscale_frame(frame: np.ndarray, factor: float) -> np.ndarray:
    """[H, W, 3] uint8 shrunk by `factor` (1 = unchanged) -> uint8.

    An integer factor averages factor x factor blocks (fast; a few edge pixels are
    dropped when the size is not a multiple); other factors use area resampling.
    """
    from loopnerf.data.images import shrink, to_uint8

    if factor == 1:
        return frame
    k = int(round(factor))
    if abs(factor - k) < 1e-9:
        h, w = (frame.shape[0] // k) * k, (frame.shape[1] // k) * k
        # integer sums (uint32) then one rounding division: 3x faster than a float mean
        blocks = frame[:h, :w].reshape(h // k, k, w // k, k, 3).sum(axis=(1, 3), dtype=np.uint32)
        return ((blocks + (k * k) // 2) // (k * k)).astype(np.uint8)
    return to_uint8(shrink(frame, factor))


def extract_frames(
    video: Path,
    image_dir: Path,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    downscale: float = 1.0,
    on_frame: Optional[Callable[[int], None]] = None,
) -> ExtractedFrames:
    """Decode `video`, writing the selected frames to `image_dir` as PNG.

    Args:
        video: any video ffmpeg reads (mp4, mov, avi, ...).
        image_dir: output folder (created).
        fps: frames per second to keep (None = every frame).
        max_frames: stop after this many kept frames (None = all).
        downscale: shrink factor (2 = half width and height).
        on_frame: called with the video index of each decoded frame (progress).
    Raises:
        CaptureError: unreadable video, bad options, or no frame decoded.
    """
    import imageio.v3 as iio

    from loopnerf.process.sharpness import laplacian_variance

    video = Path(video)
    if fps is not None and not fps > 0:
        raise CaptureError(f"option --fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise CaptureError(f"option --max-frames must be at least 1, got {max_frames}")
    if not downscale >= 1:
        raise CaptureError(f"option --downscale must be >= 1 (2 = half size), got {downscale}")
    video_fps, _, source_size = video_info(video)
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    names, index, sharp = [], [], []
    decoded = 0
    size = (0, 0)
    try:
        for i, frame in enumerate(iio.imiter(video, plugin="FFMPEG")):
            decoded = i + 1
            if on_frame is not None:
                on_frame(i)
            if not sample_frame(i, video_fps, fps):
                continue
            img = downscale_frame(np.ascontiguousarray(frame[..., :3]), downscale)
            name = f"f{i:06d}.png"
            iio.imwrite(image_dir / name, img, compress_level=1)  # scratch files: speed over size
            names.append(name)
            index.append(i)
            sharp.append(laplacian_variance(img))
            size = (img.shape[1], img.shape[0])
            if max_frames is not None and len(names) >= max_frames:
                break
    except CaptureError:
        raise
    except Exception as err:  # a truncated file fails mid-stream inside ffmpeg
        if not names:
            raise CaptureError(f"{video}: cannot decode the video: {err}") from None
    if not names:
        raise CaptureError(f"{video}: no frame could be decoded")
    return ExtractedFrames(
        names=names,
        frame_index=np.asarray(index, dtype=np.int64),
        sharpness=np.asarray(sharp, dtype=np.float64),
        video_fps=video_fps,
        video_frames=decoded,
        width=int(size[0]),
        height=int(size[1]),
        source_size=source_size,
    )
