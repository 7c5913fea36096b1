"""D-NeRF captures: the on-disk folder format and the small npz layout.

Folder format (Pumarola et al. 2021, the Blender synthetic dynamic scenes):
```
scene/transforms_train.json   {"camera_angle_x": rad, "frames": [{"file_path": "./train/r_000",
scene/transforms_val.json       "time": t, "transform_matrix": [[4x4]], "rotation": ..}, ...]}
scene/transforms_test.json
scene/train/r_000.png ...     RGBA, composited here onto `background`
```
- `file_path` has no extension; `.png` is tried first, then the path as written,
  then other image extensions.
- Poses are Blender camera-to-world = OpenGL axes, used as they are.
- `fx = fy = 0.5 W / tan(0.5 camera_angle_x)`, principal point at the image centre.
- Splits: whichever of the three files exist are loaded, frames ordered train, val,
  test. The training set is the train split; the held-out set is the test split
  (the val split when there is no test file). When there is no train file, every
  loaded frame is a training frame and nothing is held out (e.g. a folder with only
  `transforms_val.json`). `Capture.meta["splits"]` lists each split's frame indices.
- Scene box: the D-NeRF synthetic scenes live in about [-1.5, 1.5]^3 (the bound
  D-NeRF-derived codes such as HexPlane and K-Planes use); `bound=1.5` gives that
  cube, `bound=None` leaves the box to `Capture.scene_box()` (cameras' look-at
  heuristic), an explicit `box` wins over both.

npz layout (`dnerf_lego_tiny.npz`, from Tiny_Kilo-D-NeRF-NGP): arrays `images`
[N, H, W, 3] float in [0, 1] (or uint8), `poses` [N, 4, 4] OpenGL camera-to-world,
`times` [N] in [0, 1], `focal` scalar (pixels). The frames are the train, val and
test parts back to back; a part starts wherever the time drops back (times restart
at 0 in each part). With three parts: train = part 0, held out = part 2 (test),
part 1 (val) is in neither set but kept (`meta["splits"]["val"]`). With one or two
parts: train = part 0, held out = part 1 (if any).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.data.images import read_image, shrink, stack_frames, to_rgb
from loopnerf.data.nerfstudio import frame_list, parse_number, parse_pose, read_json
from loopnerf.data.progress import track_frames
from loopnerf.errors import CaptureError

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".png", "", ".jpg", ".jpeg", ".PNG", ".JPG")


def _image_path(base: Path, rel: str) -> Path:
    """The image a D-NeRF `file_path` (usually without extension) names."""
    p = Path(rel)
    p = p if p.is_absolute() else base / p
    for ext in IMAGE_EXTENSIONS:
        candidate = Path(str(p) + ext)
        if candidate.is_file():
            return candidate
    return Path(str(p) + ".png")  # does not exist: read_image reports it


def bound_box(bound: Optional[float]) -> Optional[np.ndarray]:
    """[2, 3] cube [-bound, bound]^3, or None."""
    if bound is None:
        return None
    return np.array([[-bound] * 3, [bound] * 3], dtype=np.float64)


def load_dnerf(
    path,
    split: str = "auto",
    downscale: float = 1,
    background: Optional[Sequence[float]] = (1.0, 1.0, 1.0),
    bound: Optional[float] = 1.5,
    box: Optional[Sequence[Sequence[float]]] = None,
) -> Capture:
    """Load a D-NeRF scene folder (or one of its `transforms_*.json` files).

    Args:
        path: the scene folder, or one `transforms_<split>.json` (then only that split).
        split: "auto" (every split file present, see the module docstring) or one of
            "train", "val", "test" (only that file; all its frames train).
        downscale: shrink images by this factor on load (area resampling).
        background: RGB in [0, 1] the RGBA images are composited onto; D-NeRF trains
            on white (1, 1, 1). None drops the alpha channel.
        bound: half-size of the scene cube [-bound, bound]^3 (world units); None: no box.
        box: explicit [2, 3] scene box, overriding `bound`.
    Raises: `CaptureError` naming the file and field at fault.
    """
    path = Path(path)
    if path.is_file():
        name = path.stem
        split = name[len("transforms_"):] if name.startswith("transforms_") else "train"
        folder, files = path.parent, {split: path}
    else:
        folder = path
        wanted = SPLITS if split == "auto" else (split,)
        if split != "auto" and split not in SPLITS:
            raise CaptureError(f"{path}: unknown D-NeRF split '{split}' (train, val, test or auto)")
        files = {s: folder / f"transforms_{s}.json" for s in wanted if (folder / f"transforms_{s}.json").is_file()}
        if not files:
            names = ", ".join(f"transforms_{s}.json" for s in wanted)
            raise CaptureError(f"{path}: no D-NeRF transforms file ({names}) in this folder")
    if downscale <= 0:
        raise CaptureError(f"{path}: downscale must be positive, got {downscale}")

    images, names, poses, intrinsics, times = [], [], [], [], []
    splits: dict[str, list[int]] = {}
    for s, json_path in files.items():
        meta = read_json(json_path)
        src = str(json_path)
        frames = frame_list(meta, src)
        if "camera_angle_x" not in meta:
            raise CaptureError(f"{src}: missing key 'camera_angle_x' (horizontal field of view, radians)")
        angle = parse_number(meta["camera_angle_x"], src, "camera_angle_x")
        if not (0 < angle < math.pi):
            raise CaptureError(f"{src}: field 'camera_angle_x' = {angle} must be in (0, pi) radians")
        splits[s] = []
        for i, frame in track_frames(enumerate(frames), len(frames), f"loading {json_path.name}"):
            where = f"{src}: frame {i}"
            if not isinstance(frame, dict):
                raise CaptureError(f"{where}: must be an object")
            for key in ("file_path", "transform_matrix", "time"):
                if key not in frame:
                    raise CaptureError(f"{where}: missing key '{key}'")
            rel = str(frame["file_path"])
            where = f"{src}: frame {i} ('{rel}')"
            raw = read_image(_image_path(folder if path.is_dir() else json_path.parent, rel), referenced_by=where)
            h, w = raw.shape[:2]
            f = 0.5 * w / math.tan(0.5 * angle)
            k = Intrinsics(f, f, w / 2, h / 2, w, h)
            rgb = to_rgb(raw, background)
            if downscale != 1:
                rgb = shrink(rgb, downscale)
                k = k.scaled(1.0 / downscale)
            splits[s].append(len(images))
            images.append(rgb)
            names.append(rel)
            poses.append(parse_pose(frame["transform_matrix"], where))
            intrinsics.append(k)
            times.append(parse_number(frame["time"], where, "time"))

    first = str(next(iter(files.values())))
    if not images:
        raise CaptureError(f"{first}: the capture is empty (no frames in {', '.join(map(str, files.values()))})")
    source = str(folder) if len(files) > 1 else first
    stacked = stack_frames(images, names, source)
    if split == "auto" and "train" in splits:
        train_idx = splits["train"]
        eval_idx = splits.get("test", splits.get("val", []))
    else:
        train_idx, eval_idx = list(range(len(images))), []
    return Capture(
        images=stacked,
        c2w=np.stack(poses),
        intrinsics=intrinsics,
        times=np.asarray(times, dtype=np.float64),
        train_idx=np.asarray(train_idx, dtype=np.int64),
        eval_idx=np.asarray(eval_idx, dtype=np.int64),
        box=np.asarray(box, dtype=np.float64) if box is not None else bound_box(bound),
        source=source,
        name=folder.name or "dnerf",
        meta={"format": "dnerf", "splits": splits, "file_paths": names},
    )


def load_dnerf_npz(
    path,
    downscale: float = 1,
    bound: Optional[float] = 1.5,
    box: Optional[Sequence[Sequence[float]]] = None,
) -> Capture:
    """Load the D-NeRF npz layout (see the module docstring).

    Args:
        path: the .npz file.
        downscale: shrink images by this factor on load (area resampling).
        bound: half-size of the scene cube [-bound, bound]^3; None: no box.
        box: explicit [2, 3] scene box, overriding `bound`.
    Raises: `CaptureError` naming the file and the array at fault.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise CaptureError(f"{src}: file does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        arrays = {key: data[key] for key in data.files}
    except Exception as err:  # zipfile / format errors of many kinds
        raise CaptureError(f"{src}: not a readable npz file: {err}") from None
    for key in ("images", "poses", "times", "focal"):
        if key not in arrays:
            raise CaptureError(f"{src}: missing key '{key}' (has {', '.join(sorted(arrays)) or 'nothing'})")
    imgs, poses, times = arrays["images"], arrays["poses"], arrays["times"]
    if imgs.ndim != 4 or imgs.shape[-1] not in (3, 4):
        raise CaptureError(f"{src}: field 'images' must be [N, H, W, 3], got {imgs.shape}")
    n = len(imgs)
    if n == 0:
        raise CaptureError(f"{src}: the capture is empty (field 'images' has no frames)")
    if imgs.shape[-1] == 4:
        imgs = np.stack([to_rgb(im, (1.0, 1.0, 1.0)) for im in imgs])
    if poses.shape == (n, 3, 4):
        poses = np.concatenate([poses, np.tile([[[0, 0, 0, 1.0]]], (n, 1, 1))], axis=1)
    if poses.shape != (n, 4, 4):
        raise CaptureError(f"{src}: field 'poses' must be [{n}, 4, 4], got {poses.shape}")
    times = times.reshape(-1)
    if times.shape != (n,):
        raise CaptureError(f"{src}: field 'times' must have {n} values, got {arrays['times'].shape}")
    focal = np.asarray(arrays["focal"], dtype=np.float64).reshape(-1)
    if focal.size != 1 or not np.isfinite(focal[0]) or focal[0] <= 0:
        raise CaptureError(f"{src}: field 'focal' must be one positive number (pixels)")
    h, w = imgs.shape[1:3]
    k = Intrinsics(float(focal[0]), float(focal[0]), w / 2, h / 2, w, h)
    if np.issubdtype(imgs.dtype, np.floating):
        imgs = imgs.astype(np.float32, copy=False)
    if downscale != 1:
        if downscale <= 0:
            raise CaptureError(f"{src}: downscale must be positive, got {downscale}")
        imgs = np.stack([shrink(im, downscale) for im in imgs])
        k = k.scaled(1.0 / downscale)

    # parts start where the time drops back (times restart at 0 in each part)
    starts = [0] + [int(i) + 1 for i in np.where(np.diff(times) < 0)[0]] + [n]
    parts = [list(range(a, b)) for a, b in zip(starts[:-1], starts[1:])]
    names = ("train", "val", "test") if len(parts) == 3 else tuple(f"part{j}" for j in range(len(parts)))
    splits = dict(zip(names, parts))
    train_idx = parts[0]
    eval_idx = parts[2] if len(parts) == 3 else (parts[1] if len(parts) > 1 else [])
    return Capture(
        images=imgs,
        c2w=poses.astype(np.float64),
        intrinsics=[k] * n,
        times=times.astype(np.float64),
        train_idx=np.asarray(train_idx, dtype=np.int64),
        eval_idx=np.asarray(eval_idx, dtype=np.int64),
        box=np.asarray(box, dtype=np.float64) if box is not None else bound_box(bound),
        source=src,
        name=path.stem,
        meta={"format": "dnerf_npz", "splits": splits},
    )
