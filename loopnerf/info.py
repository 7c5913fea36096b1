"""`loopnerf info PATH`: print what a capture, checkpoint or baked `.loop` file holds.

The dispatch is a list of `Describer`s tried in order; the first whose `matches`
accepts the path describes it as a JSON-able dict (plus, optionally, a text block
for the table). To teach `info` a new kind of input (e.g. a run folder), append a
`Describer` to `DESCRIBERS` (or insert it before the capture describer).
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tyro.conf import Positional

from loopnerf.errors import LoopNeRFError
from loopnerf.safetensors_header import read_safetensors_header


@dataclass(frozen=True)
class Describer:
    """One kind of input `info` understands."""

    kind: str
    matches: Callable[[Path], bool]
    describe: Callable[[Path, dict], dict]  # (path, options) -> summary dict


# --------------------------------------------------------------------- captures
def _is_capture(path: Path) -> bool:
    from loopnerf.data.load import capture_format

    return capture_format(path) is not None


def describe_capture(path: Path, options: dict) -> dict:
    """Summary of a capture: frames, resolution, time range, camera path length,
    scene box, split, focal length and format."""
    from loopnerf.data.load import capture_format, load_capture

    capture = load_capture(path, downscale=options.get("downscale", 1.0))
    out = {"kind": "capture", "format": capture_format(path)}
    out.update(capture.describe())
    k = capture.intrinsics_array()
    out["focal_px"] = [round(float(k[:, 0].min()), 3), round(float(k[:, 0].max()), 3)]
    out["image_dtype"] = str(capture.images.dtype)
    return out


# ------------------------------------------------------------------ .loop files
def _is_loop(path: Path) -> bool:
    return path.is_file() and path.suffix == ".loop"


def describe_loop(path: Path, options: dict) -> dict:
    """Summary of a baked `.loop` file, read and validated by `loopnerf.export.load_loop`."""
    from loopnerf.export import load_loop

    baked = load_loop(path)
    out = {"kind": "loop", "source": str(path), "bytes": path.stat().st_size}
    out.update(baked.header())
    out["_text"] = baked.summary()
    return out


# ----------------------------------------------------------- safetensors files
def describe_safetensors(path: Path, options: dict) -> dict:
    """Summary of a checkpoint: tensor count, parameter count, dtypes, metadata keys."""
    header = read_safetensors_header(path)
    meta = header.pop("__metadata__", {}) or {}
    params = 0
    dtypes: dict[str, int] = {}
    tensors = {}
    for name, info in header.items():
        shape = info.get("shape", [])
        count = 1
        for d in shape:
            count *= int(d)
        params += count
        dtypes[info.get("dtype", "?")] = dtypes.get(info.get("dtype", "?"), 0) + 1
        tensors[name] = [info.get("dtype", "?"), shape]
    return {
        "kind": "checkpoint",
        "source": str(path),
        "bytes": path.stat().st_size,
        "tensors": len(tensors),
        "parameters": params,
        "dtypes": dtypes,
        "metadata_keys": sorted(meta),
        "tensor_shapes": tensors,
    }


def _is_safetensors(path: Path) -> bool:
    return path.is_file() and path.suffix == ".safetensors"


# ------------------------------------------------------------------- run folders
def _is_run(path: Path) -> bool:
    from loopnerf.run_folder import RunFolder

    return RunFolder.is_run(path)


def describe_run(path: Path, options: dict) -> dict:
    """Summary of a run folder: which stages are done, with their key figures."""
    from loopnerf.run_folder import RunFolder

    run = RunFolder(path)
    cfg = run.read_stage1_config()
    out = {"kind": "run", "capture": cfg.get("capture"), "preset": cfg.get("config", {}).get("preset")}
    field = cfg.get("config", {}).get("model", {}).get("field", {})
    out["stage1_grid"] = f"{field.get('resolution')} x {field.get('multiscale')}, C={field.get('features')}, decoder {field.get('decoder')}"
    out["scene_box"] = cfg.get("box")
    ev = run.read_stage1_eval() if run.stage1_eval_path.is_file() else None
    out["stage1"] = (f"done, step {ev['step']}, held-out PSNR {ev['psnr']:.2f} dB" if ev else
                     ("checkpoint only" if run.stage1_checkpoint.is_file() else "not trained"))
    out["segments"] = [f"{s.start}-{s.stop - 1}" for s in run.read_segments().segments] if run.has_segments() else "not selected"
    for name in run.loop_methods():
        c = run.read_loop_config(name)
        sm = run.read_loop_summary(name) if run.loop_summary_path(name).is_file() else None
        out[name] = f"F = {c['frames']} at {c['fps']:g} fps" + (f", {sm['loop_time_parameters']:,} time parameters, {sm['steps']} steps" if sm else ", in progress")
    out["baked"] = str(run.baked_path) if run.has_bake() else "no"
    return out


DESCRIBERS: list[Describer] = [
    Describer("run", _is_run, describe_run),
    Describer("loop", _is_loop, describe_loop),
    Describer("checkpoint", _is_safetensors, describe_safetensors),
    Describer("capture", _is_capture, describe_capture),
]


def describe(path, **options) -> dict:
    """Summary dict of whatever `path` is (first matching `DESCRIBERS` entry).

    Raises `LoopNeRFError` for a path that is none of them."""
    p = Path(path)
    if not p.exists():
        raise LoopNeRFError(f"{p}: no such file or folder")
    for d in DESCRIBERS:
        if d.matches(p):
            return d.describe(p, options)
    raise LoopNeRFError(
        f"{p}: not a capture, checkpoint or .loop file (expected a capture folder or file — "
        "transforms.json, transforms_{train,val,test}.json, poses_bounds.npy, .npz — "
        "a .safetensors checkpoint or a baked .loop file)"
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and isinstance(value[0], list):
        return "  ".join("[" + ", ".join(_fmt(v) for v in row) + "]" for row in value)
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def print_table(summary: dict) -> None:
    """Print a summary dict as a two-column rich table."""
    from rich.console import Console
    from rich.table import Table

    text = summary.get("_text")
    table = Table(title=f"{summary.get('kind', '?')}: {summary.get('source', '')}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    skip = {"_text", "kind", "source", "tensor_shapes"}
    for key, value in summary.items():
        if key in skip:
            continue
        table.add_row(key.replace("_", " "), _fmt(value))
    console = Console()
    console.print(table)
    if text:
        console.print(text)


def info(path: Positional[Path], json: bool = False, downscale: float = 1.0) -> int:
    """Print what a capture, checkpoint or baked `.loop` file holds.

    For a capture: format, frames (train / held out), resolution (pixels), time range,
    camera path length (world units, summed centre-to-centre steps), scene box (world
    units, min and max corners), focal length (pixels), masks. For a `.loop` file: its
    header. For a `.safetensors` checkpoint: its tensors and metadata keys.

    Args:
        path: a capture folder or file (nerfstudio transforms.json, D-NeRF folder or npz, LLFF poses_bounds.npy), a .safetensors checkpoint or a .loop file.
        json: print one JSON object instead of a table.
        downscale: load a capture's images shrunk by this factor (faster for big captures; the resolution shown is the shrunk one).
    """
    summary = describe(path, downscale=downscale)
    if json:
        print(jsonlib.dumps({k: v for k, v in summary.items() if k != "_text"}, indent=1))
    else:
        print_table(summary)
    return 0
