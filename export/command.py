"""`loopnerf export SCENE.loop --format glb|web|ply|layers --out DIR`: play the loop in other engines."""

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
    format: Literal["glb", "web", "ply", "layers"],
    out: Path,
    overwrite: bool = False,
    stills: Path | None = None,
    voxel: float | None = None,
    fuse_height: int | None = None,
    min_opacity: float = 0.5,
    subdivide: int = 0,
    colors: Literal["splat", "projection"] = "splat",
    depth: Literal["median", "expected"] = "median",
    planes: int = 32,
    quiet: bool = False,
) -> int:
    """Export a baked loop for other engines.

    glb: `scene.glb`, glTF 2.0 binary: a static mesh and one mesh per loop frame for what
    moves, shown in turn by one animation at the loop's fps (Blender, three.js, any glTF
    viewer). The surfaces are what the viewer shows: its renders (median depth and
    colour) from the default camera, the still cameras and an orbit around each, fused
    into TSDF volumes; vertex colours are the viewer's colours, drawn unlit.
    web: the glb plus `index.html` (three.js, orbit controls) that plays the loop
    endlessly; serve the folder with any static file server.
    ply: `frame_%04d.ply` coloured point clouds (the glb's static + moving vertices, with
    normals) + `manifest.json`.
    layers: VideoLoop3D's layered format from the default camera (RGBA planes at fixed
    inverse depths: `geometry.obj`, `static.png`, `dynamic/%04d.png`, `meta.json`), from
    the viewer's renders, for VideoLoop3D's three.js player.

    Args:
        scene: the baked `.loop` file, or a run folder holding `scene.loop`.
        format: glb, web, ply or layers.
        out: output folder (created; must be empty unless --overwrite).
        overwrite: write into an existing non-empty folder, replacing same-named files.
        stills: glb / web / ply: a run's `segments.json` whose still cameras are fused too
            (default: `segments.json` beside the .loop, when there is one).
        voxel: glb / web / ply: TSDF voxel edge in world units (default: one pixel of the
            .loop's camera at its focus distance).
        fuse_height: glb / web / ply: height in pixels of the fusion renders (default: the
            .loop camera's height; the width keeps its aspect ratio).
        min_opacity: glb / web / ply: pixels the viewer covers at least this much are meshed.
        subdivide: glb / web / ply: midpoint subdivisions of the meshes before they are
            coloured from the renders (each quarters the triangles: sharper colour, 4x size).
        colors: glb / web / ply: "splat" = each vertex the mean of the rendered pixels
            that show it where an engine draws the meshes; "projection" = only from the
            views whose expected depth agrees with the vertex's own (see
            `loopnerf.export.tsdf.FusionOptions.colors`).
        depth: glb / web / ply: the viewer's depth that is fused: "median" (where half of
            a pixel's light has come; on the surface it shows) or "expected" (the mean
            distance, pulled towards haze; see `loopnerf.export.tsdf.FusionOptions.depth`).
        planes: layers: number of RGBA planes between the box's near and far depth.
        quiet: no progress bars.
    """
    from loopnerf.export.loop_format import load_loop

    from loopnerf.run_folder import RunFolder

    scene = Path(scene)
    if scene.is_dir():
        scene = RunFolder(scene).baked_path
    baked = load_loop(scene)
    if baked.unbounded and format in ("glb", "web", "ply"):
        import sys

        # Not yet measured on an unbounded loop: the fusion volume is the scene box, so
        # what lies beyond it (the contracted shell: sky, far background) is left out.
        print(f"warning: {scene} is unbounded (contraction {baked.contraction}); the {format} export holds what "
              "lies inside the scene box only", file=sys.stderr)
    if planes < 2:
        raise LoopNeRFError(f"need --planes >= 2, got {planes}")
    if voxel is not None and not voxel > 0:
        raise LoopNeRFError(f"--voxel must be > 0 world units, got {voxel}")
    if fuse_height is not None and fuse_height < 4:
        raise LoopNeRFError(f"--fuse-height must be >= 4 pixels, got {fuse_height}")
    if not 0 <= subdivide <= 3:
        raise LoopNeRFError(f"--subdivide must be 0..3, got {subdivide}")
    if colors not in ("splat", "projection"):
        raise LoopNeRFError(f"--colors must be splat or projection, got {colors!r}")
    from loopnerf.viewer.renderer import DEPTH_KINDS

    if depth not in DEPTH_KINDS:
        raise LoopNeRFError(f"--depth must be one of {', '.join(DEPTH_KINDS)}, got {depth!r}")
    if not 0.0 < min_opacity < 1.0:
        raise LoopNeRFError(f"--min-opacity must be in (0, 1), got {min_opacity}")
    if stills is not None and not Path(stills).is_file():
        raise LoopNeRFError(f"{stills}: no such file (--stills takes a run's segments.json)")
    progress = not quiet
    if format in ("glb", "web", "ply"):
        from loopnerf.export.tsdf import FusionOptions, still_cameras

        segments = Path(stills) if stills is not None else RunFolder(scene.parent).segments_path
        poses = still_cameras(segments)
        options = FusionOptions(voxel=voxel, height=fuse_height, min_opacity=min_opacity, subdivide=subdivide,
                                colors=colors, depth=depth)
        if format == "web":
            from loopnerf.export.web import find_three

            find_three()  # before any output: fail fast when three.js is missing
    out_dir = prepare_out_dir(out, overwrite)
    if format == "glb":
        from loopnerf.export.glb import export_glb

        path = export_glb(baked, out_dir, stills=poses, options=options, progress=progress)
    elif format == "web":
        from loopnerf.export.web import export_web

        path = export_web(baked, out_dir, stills=poses, options=options, progress=progress)
    elif format == "ply":
        from loopnerf.export.ply import export_ply

        path = export_ply(baked, out_dir, stills=poses, options=options, progress=progress)
    else:
        from loopnerf.export.layers import export_layers

        path = export_layers(baked, out_dir, planes=planes, progress=progress)
    print(f"wrote {path}")
    return 0
