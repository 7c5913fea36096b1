"""`load_capture`: read a capture from disk, whatever its format.

Detection, in order (`capture_format`):
- a `.npz` file                                   -> D-NeRF npz layout (`load_dnerf_npz`)
- `poses_bounds.npy`, or a folder holding it      -> LLFF / VideoLoop3D (`load_llff`)
- `transforms_{train,val,test}.json`, or a folder holding one of them
                                                  -> D-NeRF folder (`load_dnerf`)
- any other `.json`, or a folder with `transforms.json` -> nerfstudio (`load_nerfstudio`)
A folder holding both `transforms.json` and D-NeRF split files is read as nerfstudio.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional, Sequence

from loopnerf.data.capture import Capture
from loopnerf.errors import CaptureError

FORMATS = ("nerfstudio", "dnerf", "dnerf_npz", "llff")


def capture_format(path) -> Optional[str]:
    """The capture format at `path` (one of `FORMATS`), or None if it is none of them."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() == ".npz":
            return "dnerf_npz"
        if p.name == "poses_bounds.npy":
            return "llff"
        if p.suffix.lower() == ".json":
            return "dnerf" if p.stem in ("transforms_train", "transforms_val", "transforms_test") else "nerfstudio"
        return None
    if p.is_dir():
        if (p / "transforms.json").is_file():
            return "nerfstudio"
        if any((p / f"transforms_{s}.json").is_file() for s in ("train", "val", "test")):
            return "dnerf"
        if (p / "poses_bounds.npy").is_file():
            return "llff"
    return None


def load_capture(
    path,
    downscale: float = 1,
    background: Optional[Sequence[float]] = (1.0, 1.0, 1.0),
    box: Optional[Sequence[Sequence[float]]] = None,
    format: Optional[str] = None,
    **kw,
) -> Capture:
    """Load a capture, detecting its format.

    Args:
        path: a capture file or folder (see the module docstring).
        downscale: shrink images by this factor on load (area resampling, 2 = half
            size); intrinsics are scaled to match.
        background: RGB in [0, 1] that images with alpha are composited onto.
        box: [2, 3] scene box in world units (min corner, max corner), overriding
            what the data gives (`loopnerf_box`, D-NeRF's bound, LLFF frustums).
        format: force a format (one of `FORMATS`) instead of detecting it.
        **kw: options of the chosen importer (e.g. `split`, `bound` for D-NeRF;
            `frame_step`, `holdout_view` for LLFF). Unknown ones are an error.
    Raises: `CaptureError` if the path is no capture or the capture is invalid.
    """
    from loopnerf.data.dnerf import load_dnerf, load_dnerf_npz
    from loopnerf.data.llff import load_llff
    from loopnerf.data.nerfstudio import load_nerfstudio

    p = Path(path)
    if not p.exists():
        raise CaptureError(f"{p}: no such file or folder")
    fmt = format or capture_format(p)
    if fmt is None:
        raise CaptureError(
            f"{p}: not a capture (expected a folder with transforms.json, transforms_{{train,val,test}}.json "
            "or poses_bounds.npy, or a .json / .npz file)"
        )
    if fmt not in FORMATS:
        raise CaptureError(f"{p}: unknown capture format '{fmt}' (one of {', '.join(FORMATS)})")
    loader = {"nerfstudio": load_nerfstudio, "dnerf": load_dnerf, "dnerf_npz": load_dnerf_npz, "llff": load_llff}[fmt]
    options = dict(kw, downscale=downscale, box=box, background=background)
    accepted = inspect.signature(loader).parameters
    unknown = [k for k in kw if k not in accepted]
    if unknown:
        raise CaptureError(f"{p}: option(s) {', '.join(unknown)} do not apply to the {fmt} format")
    cap = loader(p, **{k: v for k, v in options.items() if k in accepted})
    # how it was loaded, so a stage that records the capture (stage 1) can load it again
    cap.meta = {**(cap.meta or {}), "load": {"path": str(p.resolve()), "downscale": downscale, "box": box, "background": background, **kw}}
    return cap
