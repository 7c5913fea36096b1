"""`loopnerf export SCENE.loop --format glb|ply|layers --out DIR`: play the loop in other engines."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tyro.conf import Positional

from loopnerf.errors import LoopNeRFError


def prepare_out_dir(out: Path, overwrite: bool) -> Path:
    """Create `out`; refuse an existing non-empty folder unless `overwrite`
    (then files of the same names are replaced; other files are left alone)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LoopNeRFError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LoopNeRFError(f"{out}: folder exists and is not empty; pass --overwrite to write into it anyway")
    out.mkdir(parents=True, exist_ok=True)
    return out


def export(
    scene: Positional[Path],
    format: Literal["glb", "ply", "layers"],
    out: Path,
    overwrite: bool = False,
    resolution: int = 96,
    iso: float | None = None,
    planes: int = 32,
    samples: int = 128,
    quiet: bool = False,
) -> int:
    """Export a baked loop for other engines.

    glb: `scene.glb`, glTF 2.0 binary with one vertex-coloured mesh per loop frame
    (marching cubes on the baked density, colours seen from the default camera) and an
    animation showing them one at a time (Blender, three.js, any glTF viewer).
    ply: `frame_%04d.ply` coloured point clouds (surface points) + `manifest.json`.
    layers: VideoLoop3D's layered format from the default camera (RGBA planes at fixed
    inverse depths: `geometry.obj`, `static.png`, `dynamic/%04d.png`, `meta.json`), which
    VideoLoop3D's three.js player plays.

    Args:
        scene: the baked `.loop` file, or a run folder holding `scene.loop`.
        format: glb, ply or layers.
        out: output folder (created; must be empty unless --overwrite).
        overwrite: write into an existing non-empty folder, replacing same-named files.
        resolution: glb / ply: density grid nodes per axis over the scene box.
        iso: glb / ply: surface density level per world unit (default: the density at
            which one grid cell is half opaque, ln 2 / cell size).
        planes: layers: number of RGBA planes between the box's near and far depth.
        samples: layers: samples per ray when integrating each plane's slab.
        quiet: no progress bars.
    """
    from loopnerf.export.loop_format import load_loop

    scene = Path(scene)
    if scene.is_dir():
        scene = scene / "scene.loop"
    baked = load_loop(scene)
    if resolution < 8:
        raise LoopNeRFError(f"--resolution must be >= 8, got {resolution}")
    if planes < 2 or samples < planes:
        raise LoopNeRFError(f"need --planes >= 2 and --samples >= --planes, got {planes} and {samples}")
    out_dir = prepare_out_dir(out, overwrite)
    progress = not quiet
    if format == "glb":
        from loopnerf.export.glb import export_glb

        path = export_glb(baked, out_dir, resolution=resolution, iso=iso, progress=progress)
    elif format == "ply":
        from loopnerf.export.ply import export_ply

        path = export_ply(baked, out_dir, resolution=resolution, iso=iso, progress=progress)
    else:
        from loopnerf.export.layers import export_layers

        path = export_layers(baked, out_dir, planes=planes, n_samples=samples, progress=progress)
    print(f"wrote {path}")
    return 0
