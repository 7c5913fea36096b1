"""PLY point-cloud sequence export: one coloured point cloud per loop frame.

Frame k's points are the vertices of the glb export's surfaces (`loopnerf.export.tsdf`:
the viewer's renders fused into TSDF volumes), the static mesh's and frame k's moving
mesh's, with their colours (display sRGB, what the viewer shows) and vertex normals, in
world coordinates. `manifest.json` lists the frame files in play order with the playback
rate, so any tool can play the sequence as a loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.export.tsdf import FusedLoop, FusionOptions, Mesh

MANIFEST_FORMAT = "loopnerf.ply-sequence"


def _normals(mesh: "Mesh"):
    """Unit vertex normals [V, 3] float64 (area-weighted face normals, open3d)."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)),
        o3d.utility.Vector3iVector(mesh.faces.astype(np.int32)),
    )
    m.compute_vertex_normals()
    return np.asarray(m.vertex_normals)


def export_ply(
    baked: "BakedLoop",
    out_dir: Path,
    *,
    stills: "Sequence[np.ndarray]" = (),
    options: "FusionOptions | None" = None,
    progress: bool = True,
    fused: "FusedLoop | None" = None,
) -> Path:
    """Write `frame_%04d.ply` (binary, open3d) for every loop frame and `manifest.json`
    {"format", "version", "fps", "frame_count", "frames": [...], "loop": true, "box",
    "up", "points_per_frame", "static_points"}. Returns the manifest path.

    The surfaces come from `fuse_loop(baked, stills, options)` unless `fused` is given."""
    import open3d as o3d

    from loopnerf.errors import LoopNeRFError
    from loopnerf.export.tsdf import fuse_loop

    out_dir = Path(out_dir)
    if fused is None:
        fused = fuse_loop(baked, stills, options, progress=progress)
    static_n = _normals(fused.static) if len(fused.static) else np.zeros((0, 3))
    files, counts = [], []
    for k, mesh in enumerate(fused.frames):
        moving_n = _normals(mesh) if len(mesh) else np.zeros((0, 3))
        pts = np.concatenate([fused.static.vertices, mesh.vertices]).astype(np.float64)
        if len(pts) == 0:
            raise LoopNeRFError(f"loop frame {k}: the fused surfaces are empty; nothing to write")
        pc = o3d.geometry.PointCloud()
        pc.points = o3d.utility.Vector3dVector(pts)
        pc.colors = o3d.utility.Vector3dVector(np.clip(np.concatenate([fused.static.colors, mesh.colors]), 0, 1).astype(np.float64))
        pc.normals = o3d.utility.Vector3dVector(np.concatenate([static_n, moving_n]))
        name = f"frame_{k:04d}.ply"
        if not o3d.io.write_point_cloud(str(out_dir / name), pc, write_ascii=False):
            raise OSError(f"{out_dir / name}: open3d could not write the point cloud")
        files.append(name)
        counts.append(len(pts))
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 2,
        "fps": float(baked.fps),
        "frame_count": len(files),
        "frames": files,
        "loop": True,
        "box": [list(baked.box[0]), list(baked.box[1])],
        "up": list(baked.up),
        "points_per_frame": counts,
        "static_points": int(len(fused.static)),
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path
