"""PLY point-cloud sequence export: one coloured point cloud per loop frame.

Each frame's points are the vertices of its marching-cubes surface (`surface.py`),
with their colours (display RGB as seen from the default camera) and outward normals,
in world coordinates. `manifest.json` lists the frame files in play order with the
playback rate, so any tool can play the sequence as a loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop

MANIFEST_FORMAT = "loopnerf.ply-sequence"


def export_ply(baked: "BakedLoop", out_dir: Path, *, resolution: int = 64, iso: float | None = None, progress: bool = True) -> Path:
    """Write `frame_%04d.ply` (binary, open3d) for every loop frame and
    `manifest.json` {"format", "version", "fps", "frame_count", "frames": [...], "box",
    "up", "loop": true}. Returns the manifest path."""
    import open3d as o3d

    from loopnerf.export.surface import loop_surfaces

    out_dir = Path(out_dir)
    surfaces = loop_surfaces(baked, resolution, iso, progress=progress)
    files = []
    for k, s in enumerate(surfaces):
        pc = o3d.geometry.PointCloud()
        pc.points = o3d.utility.Vector3dVector(s.vertices.astype(np.float64))
        pc.colors = o3d.utility.Vector3dVector(np.clip(s.colors, 0, 1).astype(np.float64))
        pc.normals = o3d.utility.Vector3dVector(s.normals.astype(np.float64))
        name = f"frame_{k:04d}.ply"
        if not o3d.io.write_point_cloud(str(out_dir / name), pc, write_ascii=False):
            raise OSError(f"{out_dir / name}: open3d could not write the point cloud")
        files.append(name)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "fps": float(baked.fps),
        "frame_count": len(files),
        "frames": files,
        "loop": True,
        "box": [list(baked.box[0]), list(baked.box[1])],
        "up": list(baked.up),
        "points_per_frame": [int(len(s.vertices)) for s in surfaces],
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path
