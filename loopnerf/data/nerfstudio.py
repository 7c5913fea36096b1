"""nerfstudio `transforms.json` captures: read and write.

The format (https://docs.nerf.studio/quickstart/data_conventions.html):
```json
{"camera_model": "OPENCV", "fl_x": .., "fl_y": .., "cx": .., "cy": .., "w": .., "h": ..,
 "k1": 0, "k2": 0, "p1": 0, "p2": 0,
 "frames": [{"file_path": "images/00000.png", "transform_matrix": [[4x4]], "time": 0.0,
             "mask_path": "masks/00000.png"}, ...],
 "train_filenames": [...], "val_filenames": [...],
 "loopnerf_box": [[xmin, ymin, zmin], [xmax, ymax, zmax]]}
```
- `file_path` is relative to the json's folder; a path without extension gets
  `.png` / `.jpg` appended if only that file exists.
- `transform_matrix` is camera-to-world in the OpenGL convention (nerfstudio's own);
  a 3x4 matrix gets the row [0, 0, 0, 1] appended.
- Intrinsics (`fl_x, fl_y, cx, cy, w, h`) are global, or per frame (a frame's keys
  override the global ones). `fl_y` defaults to `fl_x`, `cx, cy` to the image centre,
  `w, h` to the image size; without `fl_x` anywhere, `camera_angle_x` (radians,
  horizontal field of view) is accepted as the Blender/D-NeRF files have it.
  If `w, h` differ from the stored image by the same factor on both axes (a
  downscaled image folder), the intrinsics are scaled to the image.
- Lens distortion: `camera_model` OPENCV / FULL_OPENCV (or PINHOLE with non-zero
  coefficients) with `k1..k6, p1, p2` is **applied on load**: each image (and mask) is
  resampled to the ideal pinhole camera with the same `fl_x, fl_y, cx, cy`
  (`loopnerf.data.images.undistort_opencv`, bilinear; nearest for masks). Fisheye
  and equirectangular models are rejected with a `CaptureError`.
- `time` per frame in [0, 1]; if no frame has one, time = frame order / (N - 1)
  (the order of `frames` in the file). Some frames with and some without is an error.
- Split: `train_filenames` / `val_filenames` (or `test_filenames`) name frames by
  their `file_path`. Without them every 10th frame, starting at frame 5 (frames
  5, 15, 25, ...), is held out and the rest train; captures of 5 frames or fewer
  hold nothing out.
- `mask_path` (optional, per frame): a grey/RGB(A) image, non-zero (> 50 %) = pixel
  to train on (nerfstudio's convention). Frames without a mask get an all-true mask
  when others have one.
- `loopnerf_box`: the scene box; other unknown top-level keys are kept in
  `Capture.meta["extra"]`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.data.images import read_image, shrink, stack_frames, to_rgb, to_uint8, undistort_opencv
from loopnerf.data.progress import track_frames
from loopnerf.errors import CaptureError

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")
KNOWN_KEYS = set(INTRINSIC_KEYS) | set(DISTORTION_KEYS) | {
    "camera_model",
    "frames",
    "train_filenames",
    "val_filenames",
    "test_filenames",
    "loopnerf_box",
    "camera_angle_x",
    "camera_angle_y",
}
REJECTED_MODELS = ("OPENCV_FISHEYE", "FISHEYE", "EQUIRECTANGULAR", "FISHEYE624")


def read_json(path: Path) -> dict:
    """Parse a JSON file, turning a missing or malformed file into a `CaptureError`."""
    if not path.is_file():
        raise CaptureError(f"{path}: file does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CaptureError(f"{path}: not a readable JSON file: {err}") from None
    if not isinstance(data, dict):
        raise CaptureError(f"{path}: top level must be a JSON object")
    return data


def frame_list(meta: dict, src: str) -> list:
    """The `frames` list of a transforms file; `CaptureError` if missing or not a list."""
    frames = meta.get("frames")
    if frames is None:
        raise CaptureError(f"{src}: missing key 'frames'")
    if not isinstance(frames, list):
        raise CaptureError(f"{src}: field 'frames' must be a list")
    return frames


def parse_pose(value, where: str) -> np.ndarray:
    """A 4x4 (or 3x4) nested list -> [4, 4] float64; `CaptureError` if malformed."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError(f"{where}: field 'transform_matrix' is not a numeric matrix") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise CaptureError(f"{where}: field 'transform_matrix' must be 4x4, got shape {m.shape}")
    return m


def parse_number(value, where: str, key: str) -> float:
    """A JSON number -> float; `CaptureError` naming `key` otherwise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CaptureError(f"{where}: field '{key}' must be a number, got {value!r}") from None
    return x


def default_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every 10th frame from frame 5 held out (5, 15, ...), the rest train."""
    idx = np.arange(n)
    held = (idx % 10 == 5)
    return idx[~held], idx[held]


def _norm(base: Path, rel: str) -> str:
    p = Path(rel)
    return os.path.normpath(str(p if p.is_absolute() else base / p))


def load_nerfstudio(
    path,
    downscale: float = 1,
    background: Optional[Sequence[float]] = (1.0, 1.0, 1.0),
    box: Optional[Sequence[Sequence[float]]] = None,
) -> Capture:
    """Load a nerfstudio capture.

    Args:
        path: a `transforms.json` file, or the folder holding one.
        downscale: shrink images by this factor on load (area resampling; 2 = half
            size); intrinsics are scaled to match.
        background: RGB in [0, 1] that RGBA images are composited onto
            (None: drop alpha).
        box: [2, 3] scene box (world units) overriding the file's `loopnerf_box`.
    Returns: a `Capture` (OpenGL camera-to-world poses, times in [0, 1]).
    Raises: `CaptureError` naming the file and the field at fault.
    """
    path = Path(path)
    json_path = path / "transforms.json" if path.is_dir() else path
    if path.is_dir() and not json_path.is_file():
        raise CaptureError(f"{path}: no transforms.json in this folder")
    if downscale <= 0:
        raise CaptureError(f"{json_path}: downscale must be positive, got {downscale}")
    meta = read_json(json_path)
    base = json_path.parent
    src = str(json_path)
    frames = frame_list(meta, src)
    if not frames:
        raise CaptureError(f"{src}: the capture is empty (field 'frames' has no entries)")

    model = str(meta.get("camera_model", "OPENCV")).upper()
    images, masks, poses, intrinsics, times, names = [], [], [], [], [], []
    for i, frame in track_frames(enumerate(frames), len(frames), f"loading {json_path.name}"):
        where = f"{src}: frame {i}"
        if not isinstance(frame, dict):
            raise CaptureError(f"{where}: must be an object")
        if "file_path" not in frame:
            raise CaptureError(f"{where}: missing key 'file_path'")
        if "transform_matrix" not in frame:
            raise CaptureError(f"{where}: missing key 'transform_matrix'")
        rel = str(frame["file_path"])
        where = f"{src}: frame {i} ('{rel}')"
        poses.append(parse_pose(frame["transform_matrix"], where))
        names.append(_norm(base, rel))

        frame_model = str(frame.get("camera_model", model)).upper()
        if frame_model in REJECTED_MODELS:
            raise CaptureError(
                f"{where}: field 'camera_model' = {frame_model} is not supported "
                "(only pinhole / OPENCV captures; undistort the images first, e.g. with COLMAP's image_undistorter)"
            )
        raw = read_image(with_extension(Path(names[-1])), referenced_by=where, field="file_path")
        img_h, img_w = raw.shape[:2]
        k = intrinsics_of(frame, meta, img_w, img_h, where)
        dist = [parse_number(frame.get(key, meta.get(key, 0.0)), where, key) for key in DISTORTION_KEYS]
        rgb = to_rgb(raw, background) if raw.shape[2] != 3 or raw.dtype != np.uint8 else raw
        distorted = any(d != 0.0 for d in dist)
        if distorted:
            rgb = undistort_opencv(rgb, k.fx, k.fy, k.cx, k.cy, k=dist[:6], p=dist[6:], order=1)

        mask = None
        if frame.get("mask_path") is not None:
            mraw = read_image(_resolve(base, str(frame["mask_path"])), referenced_by=where, field="mask_path")
            if mraw.shape[:2] != raw.shape[:2]:
                raise CaptureError(
                    f"{where}: field 'mask_path': mask is {mraw.shape[1]}x{mraw.shape[0]} "
                    f"but the image is {img_w}x{img_h}"
                )
            m = mraw[..., 0]
            mask = m > (np.iinfo(m.dtype).max // 2 if m.dtype.kind == "u" else 0.5)
            if distorted:
                mask = undistort_opencv(mask.astype(np.uint8), k.fx, k.fy, k.cx, k.cy, k=dist[:6], p=dist[6:], order=0) > 0
        if downscale != 1:
            rgb = shrink(rgb, downscale)
            k = k.scaled(1.0 / downscale)
            if mask is not None:
                mask = shrink(mask.astype(np.float32), downscale) >= 0.5
        images.append(rgb)
        masks.append(mask)
        intrinsics.append(k)
        if "time" in frame:
            times.append(parse_number(frame["time"], where, "time"))
        else:
            times.append(None)

    n = len(frames)
    have_time = [t is not None for t in times]
    if any(have_time) and not all(have_time):
        i = have_time.index(False)
        raise CaptureError(f"{src}: frame {i}: missing key 'time' (other frames have one)")
    if not any(have_time):
        times = list(np.arange(n) / max(n - 1, 1))

    stacked = stack_frames(images, [frames[i]["file_path"] for i in range(n)], src)
    mask_arr = None
    if any(m is not None for m in masks):
        h, w = stacked.shape[1:3]
        mask_arr = np.stack([np.ones((h, w), bool) if m is None else m for m in masks])

    train_idx, eval_idx = split_of(meta, names, base, src)
    file_box = meta.get("loopnerf_box")
    if box is None and file_box is not None:
        try:
            box = np.asarray(file_box, dtype=np.float64)
        except (TypeError, ValueError):
            raise CaptureError(f"{src}: field 'loopnerf_box' must be [[xmin,ymin,zmin],[xmax,ymax,zmax]]") from None
    extra = {key: value for key, value in meta.items() if key not in KNOWN_KEYS}
    return Capture(
        images=stacked,
        c2w=np.stack(poses),
        intrinsics=intrinsics,
        times=np.asarray(times, dtype=np.float64),
        masks=mask_arr,
        train_idx=train_idx,
        eval_idx=eval_idx,
        box=None if box is None else np.asarray(box, dtype=np.float64),
        source=src,
        name=base.name or "capture",
        meta={"format": "nerfstudio", "file_paths": [f["file_path"] for f in frames], "extra": extra},
    )


def with_extension(path: Path) -> Path:
    """`path`, or `path` + .png / .jpg when the file was named without its extension
    (as D-NeRF-derived files do) and only the extended name exists."""
    if path.is_file() or path.suffix:
        return path
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):
        candidate = path.with_name(path.name + ext)
        if candidate.is_file():
            return candidate
    return path


def _resolve(base: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else base / p


def intrinsics_of(frame: dict, meta: dict, img_w: int, img_h: int, where: str) -> Intrinsics:
    """Pinhole intrinsics of one frame (frame keys override global ones), for the
    stored image size `img_w` x `img_h`."""

    def get(key):
        value = frame.get(key, meta.get(key))
        return None if value is None else parse_number(value, where, key)

    w, h = get("w"), get("h")
    w = float(img_w) if w is None else w
    h = float(img_h) if h is None else h
    fx = get("fl_x")
    if fx is None:
        angle = get("camera_angle_x")
        if angle is None:
            raise CaptureError(f"{where}: missing key 'fl_x' (focal length in pixels; or 'camera_angle_x')")
        fx = 0.5 * w / math.tan(0.5 * angle)
    fy = get("fl_y")
    if fy is None:
        angle_y = get("camera_angle_y")
        fy = fx if angle_y is None else 0.5 * h / math.tan(0.5 * angle_y)
    cx, cy = get("cx"), get("cy")
    cx = w / 2 if cx is None else cx
    cy = h / 2 if cy is None else cy
    if w <= 0 or h <= 0:
        raise CaptureError(f"{where}: field 'w/h' must be positive, got {w}x{h}")
    if (round(w), round(h)) != (img_w, img_h):
        sx, sy = img_w / w, img_h / h
        if abs(sx - sy) * max(w, h) > 1.0:
            raise CaptureError(
                f"{where}: field 'w/h' = {w:g}x{h:g} does not match the image size {img_w}x{img_h}"
            )
        fx, fy, cx, cy = fx * sx, fy * sy, cx * sx, cy * sy
    return Intrinsics(float(fx), float(fy), float(cx), float(cy), int(img_w), int(img_h))


def split_of(meta: dict, names: list, base: Path, src: str) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, eval_idx) from `train_filenames` / `val_filenames` (or
    `test_filenames`), else `default_split`."""
    n = len(names)
    lookup = {name: i for i, name in enumerate(names)}

    def indices(key):
        listed = meta.get(key)
        if listed is None:
            return None
        if not isinstance(listed, list):
            raise CaptureError(f"{src}: field '{key}' must be a list of file paths")
        out = []
        for rel in listed:
            i = lookup.get(_norm(base, str(rel)))
            if i is None:
                raise CaptureError(f"{src}: field '{key}' names '{rel}', which is no frame's file_path")
            out.append(i)
        return np.asarray(sorted(set(out)), dtype=np.int64)

    train = indices("train_filenames")
    held = indices("val_filenames")
    if held is None:
        held = indices("test_filenames")
    if train is None and held is None:
        return default_split(n)
    all_idx = np.arange(n)
    if train is None:
        train = np.setdiff1d(all_idx, held)
    if held is None:
        held = np.setdiff1d(all_idx, train)
    return train, held


def write_nerfstudio(out_dir, capture: Capture, extra: Optional[dict] = None) -> Path:
    """Write `capture` as a nerfstudio folder; returns the path of `transforms.json`.

    Writes `images/%05d.png` (8-bit RGB), `masks/%05d.png` when the capture has masks
    (255 = train on the pixel), and `transforms.json` with per-frame `file_path`,
    `transform_matrix` (OpenGL camera-to-world), `time`, `mask_path`; intrinsics
    `fl_x, fl_y, cx, cy, w, h` globally when all frames share them, else per frame;
    `camera_model: "OPENCV"` (no distortion: the images are ideal pinhole);
    `train_filenames` / `val_filenames` from the split; `loopnerf_box` when the
    capture has a box; and the keys of `extra` at the top level (they must not
    clash with the keys above).
    """
    import imageio.v3 as iio

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if capture.masks is not None:
        (out / "masks").mkdir(parents=True, exist_ok=True)
    k_arr = capture.intrinsics_array()
    shared = bool(np.all(k_arr == k_arr[0]))

    def k_dict(k: Intrinsics) -> dict:
        return {"fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy, "w": k.width, "h": k.height}

    frames, names = [], []
    for i in range(len(capture)):
        name = f"images/{i:05d}.png"
        iio.imwrite(out / name, to_uint8(capture.images[i]))
        frame = {
            "file_path": name,
            "transform_matrix": np.asarray(capture.c2w[i], dtype=np.float64).tolist(),
            "time": float(capture.times[i]),
        }
        if capture.masks is not None:
            mname = f"masks/{i:05d}.png"
            iio.imwrite(out / mname, np.where(capture.masks[i], 255, 0).astype(np.uint8))
            frame["mask_path"] = mname
        if not shared:
            frame.update(k_dict(capture.intrinsics[i]))
        frames.append(frame)
        names.append(name)

    meta: dict = {"camera_model": "OPENCV"}
    if shared:
        meta.update(k_dict(capture.intrinsics[0]))
    meta["frames"] = frames
    meta["train_filenames"] = [names[i] for i in capture.train_idx]
    meta["val_filenames"] = [names[i] for i in capture.eval_idx]
    if capture.box is not None:
        meta["loopnerf_box"] = np.asarray(capture.box, dtype=np.float64).tolist()
    for key, value in (extra or {}).items():
        if key in meta:
            raise ValueError(f"write_nerfstudio: extra key '{key}' clashes with a transforms.json key")
        meta[key] = value
    path = out / "transforms.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    return path
