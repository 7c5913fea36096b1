"""`loopnerf process VIDEO --out CAPTURE`: a plain video -> a posed nerfstudio capture.

Output folder:
```
CAPTURE/transforms.json     nerfstudio: OPENCV camera (k1.. when distortion is estimated),
                            camera-to-world OpenGL poses, per-frame `time`, `loopnerf_box`
                            (around the sparse points), `loopnerf_process` (provenance)
CAPTURE/images/NNNNN.png    the registered frames (as decoded, distortion not removed:
                            the nerfstudio loader undistorts on load)
CAPTURE/process.json        summary: frames decoded / extracted / sharp / registered,
                            reprojection error, camera, timings, peak memory
CAPTURE/camera_path.png     top view of the recovered camera path
CAPTURE/colmap/sparse/0/    the winning COLMAP model (binary, COLMAP's own world)
```
Scratch files live in `CAPTURE/.process_tmp/` while the command runs.

Time: frame `i` of the video has time `(i - first) / (last - first)`, where first and
last are the first and last *extracted* frames; frames that are rejected as blurry
or not registered leave gaps in time instead of shifting the clock.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from tyro.conf import Positional

from loopnerf.errors import CaptureError, ConfigError

EXHAUSTIVE_MAX_FRAMES = 60  # auto matching: every pair up to this many frames (1770 pairs), sequential above
TMP_NAME = ".process_tmp"
# COLMAP parameter names -> nerfstudio transforms.json distortion keys
DISTORTION_NAMES = {"k": "k1", "k1": "k1", "k2": "k2", "k3": "k3", "k4": "k4", "p1": "p1", "p2": "p2"}


@dataclass
class ProcessResult:
    """What `process_video` produced: the capture folder and its summary (process.json)."""

    capture_dir: Path
    summary: dict


def too_few_registered_message(video: Path, registered: int, attempted: int, extracted: int, need: int) -> str:
    """The error text when structure-from-motion places too few frames, with what to try."""
    return (
        f"{video}: only {registered} of {attempted} frames could be placed by structure-from-motion "
        f"({extracted} extracted); at least {need} are needed (50 % of the frames and never fewer than 10). "
        "What to try: film again moving the camera slowly and smoothly around the subject "
        "(sideways, not only turning on the spot) so neighbouring frames overlap and are sharp; "
        "film a scene with more texture (plain walls, sky, glass and shiny surfaces give no features); "
        "use --fps to sample a slow video more sparsely or a fast one densely; try --matcher exhaustive; "
        "keep more resolution (a smaller --downscale)."
    )


def intrinsics_from_camera(params: dict, width: int, height: int):
    """COLMAP camera parameters -> (`Intrinsics`, nerfstudio distortion dict k1.. p2).

    Handles the SIMPLE_PINHOLE / SIMPLE_RADIAL / RADIAL (`f`) and PINHOLE / OPENCV
    (`fx`, `fy`) parameter names; SIMPLE_RADIAL's `k` is OpenCV's k1."""
    from loopnerf.data.capture import Intrinsics

    if "f" in params:
        fx = fy = params["f"]
    else:
        fx, fy = params["fx"], params["fy"]
    k = Intrinsics(float(fx), float(fy), float(params["cx"]), float(params["cy"]), int(width), int(height))
    dist = {DISTORTION_NAMES[n]: float(v) for n, v in params.items() if n in DISTORTION_NAMES}
    return k, dist


# A phone's cameras span about 30 (telephoto) to 120 (ultra-wide) degrees horizontally,
# and their lenses' first radial coefficient stays well within +-0.5 at this
# normalisation; a reconstruction outside is usually a degenerate one (focal length
# traded against distortion on a clip with too little parallax).
PLAUSIBLE_FOV_DEG = (25.0, 125.0)
PLAUSIBLE_K1 = 0.5


def intrinsics_warnings(fov_deg: float, distortion: dict) -> list[str]:
    """Warnings for recovered intrinsics a phone camera would not have (empty if plausible).

    fov_deg: horizontal field of view in degrees; distortion: OpenCV names (k1, ...)."""
    out = []
    lo, hi = PLAUSIBLE_FOV_DEG
    if not lo <= fov_deg <= hi:
        out.append(
            f"the recovered horizontal field of view is {fov_deg:.1f} deg, outside the {lo:.0f}-{hi:.0f} deg "
            "of phone cameras: the reconstruction may be degenerate (too little parallax); "
            "keep more frames (--fps) or more resolution (a smaller --downscale), or film a wider arc"
        )
    k1 = float(distortion.get("k1", 0.0))
    if abs(k1) > PLAUSIBLE_K1:
        out.append(
            f"the recovered radial distortion k1 = {k1:.2f} is implausibly strong (|k1| > {PLAUSIBLE_K1}); "
            "the focal length may have been traded for distortion: try --camera-model SIMPLE_PINHOLE"
        )
    return out


def frame_times(frame_index: np.ndarray, first: int, last: int) -> np.ndarray:
    """[N] capture time in [0, 1] of video frames `frame_index`, the clip running from
    video frame `first` (time 0) to `last` (time 1)."""
    if last <= first:
        return np.zeros(len(frame_index))
    return (np.asarray(frame_index, dtype=np.float64) - first) / float(last - first)


def load_frames_memmap(paths: list, path: Path) -> np.ndarray:
    """Stack PNG frames into a uint8 [N, H, W, 3] array backed by the file `path`, so a
    long clip never needs its frames in memory at once."""
    import imageio.v3 as iio

    first = np.asarray(iio.imread(paths[0]))[..., :3]
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(paths),) + first.shape)
    arr[0] = first
    for i, p in enumerate(paths[1:], start=1):
        arr[i] = np.asarray(iio.imread(p))[..., :3]
    arr.flush()
    return arr


def process_video(
    video,
    out,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    downscale: float = 1.0,
    blur_filter: bool = True,
    blur_ratio: float = 0.5,
    matcher: str = "auto",
    overlap: int = 10,
    camera_model: str = "SIMPLE_RADIAL",
    threads: int = -1,
    seed: int = 0,
    min_registered_ratio: float = 0.5,
    min_registered: int = 10,
    overwrite: bool = False,
    keep_temp: bool = False,
    quiet: bool = False,
    verbose: bool = False,
) -> ProcessResult:
    """Turn `video` into a posed nerfstudio capture in `out` (see the module docstring).

    Args: as `process` (the CLI), plus `min_registered_ratio` / `min_registered`: the
        fewest frames that must register (fraction of the frames given to
        structure-from-motion, and absolute count).
    Raises:
        CaptureError: unreadable video, or too few frames registered (the message says
            what to try).
        ConfigError: `out` already holds a capture and `overwrite` is False.
    """
    from loopnerf.data.capture import Capture
    from loopnerf.data.nerfstudio import default_split, write_nerfstudio
    from loopnerf.process.frames import extract_frames, video_info
    from loopnerf.process.sfm import CAMERA_MODELS, run_sfm
    from loopnerf.process.sharpness import blurry_frames
    from loopnerf.process.step_progress import StepProgress
    from loopnerf.process.summary import peak_memory_mb, plot_camera_path
    from loopnerf.process.world_frame import (
        apply_transform,
        box_from_points,
        normalising_transform,
        opencv_w2c_to_opengl_c2w,
    )

    video, out = Path(video), Path(out)
    started = time.perf_counter()
    if camera_model not in CAMERA_MODELS:
        raise ConfigError(f"option --camera-model must be one of {', '.join(CAMERA_MODELS)}, got {camera_model!r}")
    if matcher not in ("auto", "sequential", "exhaustive"):
        raise ConfigError(f"option --matcher must be auto, sequential or exhaustive, got {matcher!r}")
    if (out / "transforms.json").exists() and not overwrite:
        raise ConfigError(f"{out}: already holds a capture (transforms.json); pass --overwrite to replace it")
    _, estimated, _ = video_info(video)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / TMP_NAME
    if tmp.exists():
        shutil.rmtree(tmp)
    image_dir = tmp / "frames"

    try:
        with StepProgress(quiet=quiet) as progress:
            with progress.step("Extracting frames", estimated) as tick:
                ex = extract_frames(video, image_dir, fps, max_frames, downscale, on_frame=lambda i: tick(i + 1))
            n_ext = len(ex.names)
            blurry = blurry_frames(ex.sharpness, blur_ratio) if blur_filter else np.zeros(n_ext, dtype=bool)
            keep = np.where(~blurry)[0]
            names = [ex.names[i] for i in keep]
            method = matcher
            if method == "auto":
                method = "exhaustive" if len(names) <= EXHAUSTIVE_MAX_FRAMES else "sequential"
            need = max(int(min_registered), int(math.ceil(min_registered_ratio * len(names))))
            sfm = None
            if len(names) >= 2:
                sfm = run_sfm(image_dir, names, tmp / "colmap", camera_model, method, overlap, threads, seed,
                              verbose=verbose, progress=progress, min_registered=need)
            registered = 0 if sfm is None else len(sfm.names)
            if registered < need:
                raise CaptureError(too_few_registered_message(video, registered, len(names), n_ext, need))

            with progress.step("Writing capture", registered) as tick:
                name_to_index = dict(zip(ex.names, ex.frame_index.tolist()))
                frame_index = np.array([name_to_index[n] for n in sfm.names], dtype=np.int64)
                times = frame_times(frame_index, int(ex.frame_index[0]), int(ex.frame_index[-1]))
                c2w_colmap = opencv_w2c_to_opengl_c2w(sfm.cam_from_world)
                world = normalising_transform(c2w_colmap, sfm.points)
                c2w, points = apply_transform(world, c2w_colmap, sfm.points)
                k, distortion = intrinsics_from_camera(sfm.camera_params, sfm.width, sfm.height)
                images = load_frames_memmap([image_dir / n for n in sfm.names], tmp / "registered.npy")
                train_idx, eval_idx = default_split(registered)
                capture = Capture(
                    images=images, c2w=c2w, intrinsics=[k] * registered, times=times,
                    train_idx=train_idx, eval_idx=eval_idx, box=box_from_points(points), source=str(video),
                    name=video.stem,
                )
                provenance = {
                    "video": str(video),
                    "video_fps": ex.video_fps,
                    "frame_index": frame_index.tolist(),
                    "world_from_colmap": world.tolist(),
                }
                write_nerfstudio(out, capture, extra={**distortion, "loopnerf_process": provenance})
                capture_box = capture.box
                del capture, images  # release the memory map before the scratch folder goes
                tick(registered)
                model_out = out / "colmap" / "sparse" / "0"
                if model_out.exists():
                    shutil.rmtree(model_out)
                shutil.copytree(sfm.model_dir, model_out)
                centres = c2w[:, :3, 3]
                steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
                summary = {
                    "video": str(video),
                    "video_fps": ex.video_fps,
                    "video_frames_decoded": ex.video_frames,
                    "source_size": list(ex.source_size),
                    "image_size": [ex.width, ex.height],
                    "frames_extracted": n_ext,
                    "clip_frames": [int(ex.frame_index[0]), int(ex.frame_index[-1])],
                    "frames_blurry": int(blurry.sum()),
                    "frames_attempted": len(names),
                    "frames_registered": registered,
                    "registered_fraction": round(registered / len(names), 4),
                    "registered_of_extracted": round(registered / n_ext, 4),
                    "unregistered_frames": sorted(set(ex.frame_index[keep].tolist()) - set(frame_index.tolist())),
                    "blurry_frames": ex.frame_index[blurry].tolist(),
                    "matcher": method,
                    "reconstructions": sfm.reconstruction_sizes,
                    "mean_reprojection_error_px": round(sfm.mean_reprojection_error, 4),
                    "points3d": int(len(sfm.points)),
                    "camera": {"model": sfm.camera_model, **{n: round(v, 6) for n, v in sfm.camera_params.items()},
                               "width": sfm.width, "height": sfm.height},
                    "horizontal_fov_deg": round(math.degrees(2 * math.atan(k.width / (2 * k.fx))), 3),
                    "warnings": intrinsics_warnings(math.degrees(2 * math.atan(k.width / (2 * k.fx))), distortion),
                    "camera_path_length": round(float(steps.sum()), 4),
                    "scene_box": None if capture_box is None else np.round(capture_box, 4).tolist(),
                    "timings_s": progress.timings,
                }
            plot_camera_path(
                out / "camera_path.png", c2w, times, points,
                f"{video.name}: {registered}/{n_ext} frames registered, "
                f"reprojection error {sfm.mean_reprojection_error:.2f} px",
                box=capture_box,
            )
        summary["timings_s"] = dict(progress.timings)
        summary["total_s"] = round(time.perf_counter() - started, 3)
        summary["peak_memory_mb"] = round(peak_memory_mb(), 1)
        import json

        (out / "process.json").write_text(json.dumps(summary, indent=1))
    finally:
        if not keep_temp and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ProcessResult(out, summary)


def process(
    video: Positional[Path],
    out: Path,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    downscale: float = 1.0,
    blur_filter: bool = True,
    blur_ratio: float = 0.5,
    matcher: Literal["auto", "sequential", "exhaustive"] = "auto",
    overlap: int = 10,
    camera_model: Literal["SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV"] = "SIMPLE_RADIAL",
    threads: int = -1,
    seed: int = 0,
    overwrite: bool = False,
    keep_temp: bool = False,
    quiet: bool = False,
    verbose: bool = False,
) -> int:
    """Recover camera poses of VIDEO (a handheld phone clip) and write a nerfstudio capture to OUT.

    Frames are decoded with ffmpeg, blurry ones dropped, and pycolmap (SIFT, matching,
    incremental mapping, one camera shared by all frames) places them; the
    reconstruction with the most frames wins. OUT gets transforms.json (OpenGL
    camera-to-world poses, per-frame time = original frame time / clip length),
    images/, process.json (summary) and camera_path.png (top view). Fails with advice
    when fewer than half the frames (or fewer than 10) register.

    Args:
        video: the video file (mp4, mov, avi, ... anything ffmpeg reads).
        out: the capture folder to write.
        fps: frames per second to extract (default: every frame). Lower it for long clips.
        max_frames: stop after extracting this many frames (default: all).
        downscale: shrink frames by this factor before everything else (2 = half size;
            a 1080p clip at 2 gives 540p).
        blur_filter: drop frames whose sharpness (variance of the Laplacian) is below
            blur_ratio x the median of the 15 frames around them.
        blur_ratio: the blur filter's threshold (fraction of the local median sharpness).
        matcher: image pairs to match: 'exhaustive' (all pairs), 'sequential' (each frame
            with the next `overlap` and quadratically spaced ones), or 'auto'
            (exhaustive up to 60 frames).
        overlap: sequential matching: neighbours each frame is matched with.
        camera_model: COLMAP camera model shared by all frames; radial distortion is
            written as OPENCV k1.. coefficients (undone when the capture is loaded).
        threads: CPU threads for COLMAP (-1 = all).
        seed: random seed of COLMAP's RANSAC and mapper.
        overwrite: replace a capture already in OUT.
        keep_temp: keep the scratch folder OUT/.process_tmp (frames, COLMAP database).
        quiet: no progress display.
        verbose: show COLMAP's own log.
    """
    res = process_video(
        video, out, fps=fps, max_frames=max_frames, downscale=downscale, blur_filter=blur_filter,
        blur_ratio=blur_ratio, matcher=matcher, overlap=overlap, camera_model=camera_model, threads=threads,
        seed=seed, overwrite=overwrite, keep_temp=keep_temp, quiet=quiet, verbose=verbose,
    )
    s = res.summary
    if not quiet:
        print(
            f"{res.capture_dir}: {s['frames_registered']}/{s['frames_extracted']} frames registered "
            f"({s['frames_blurry']} blurry dropped), reprojection error {s['mean_reprojection_error_px']:.2f} px, "
            f"horizontal FOV {s['horizontal_fov_deg']:.1f} deg, {s['total_s']:.1f} s, "
            f"peak memory {s['peak_memory_mb']:.0f} MiB; camera path: {res.capture_dir / 'camera_path.png'}"
        )
        for w in s.get("warnings", []):
            print(f"warning: {w}")
    return 0
