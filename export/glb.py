"""glTF 2.0 binary export: the loop as meshes an engine draws as the viewer shows it.

The surfaces come from `loopnerf.export.tsdf` (the viewer's renders fused into TSDF
volumes): one static mesh shared by every frame and, per loop frame, a mesh of what
moves. Layout written (by hand, so the animation is exactly what we want):
- node k (k = 0 .. F-1) "frame_k" holds frame k's moving part (no mesh where nothing
  moves); then "static" with the static mesh (left out when it is empty),
  "default_camera" (a glTF camera at the loop's default view) and the root, last;
- meshes: POSITION (float32) and COLOR_0 (unsigned-short normalised RGBA, linear RGB as
  glTF requires, converted from the display sRGB colours the viewer shows; alpha 1),
  indices uint16 or uint32;
- one animation, "loop": for every frame node a `scale` channel with STEP interpolation
  over F + 1 keys at times k / fps (k = 0..F), scale 1 at key k and 0 at the others (the
  last key repeats frame 0's state so the clip lasts exactly F / fps and players that loop
  it never jump). Key times are stored as the largest float32 not above k / fps, so a
  player seeking to exactly k / fps (in double precision) lands on frame k, not k - 1;
- node k's rest scale is 1 for frame 0 and 0 otherwise, so a static viewer shows frame 0;
- an unlit material (KHR_materials_unlit), double-sided: the colours are already the
  shaded radiance.
Coordinates: glTF is +Y up, so the world is rotated to take the header's `up` to +Y
(`up_rotation`); units are the scene's world units.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from loopnerf.export.color_space import srgb_to_linear

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.export.tsdf import FusedLoop, FusionOptions, Mesh

_FLOAT = 5126
_USHORT = 5123
_UINT = 5125
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963


def up_rotation(up) -> np.ndarray:
    """Rotation [3, 3] taking the unit vector along `up` to +Y (Rodrigues)."""
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    y = np.array([0.0, 1.0, 0.0])
    v = np.cross(u, y)
    c = float(u @ y)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


class _Buffer:
    """Accumulates binary data and the glTF bufferViews/accessors that describe it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(
        self, array: np.ndarray, kind: str, component: int, target: int | None = None, minmax: bool = False,
        normalized: bool = False,
    ) -> int:
        raw = np.ascontiguousarray(array).tobytes()
        while len(self.data) % 4:
            self.data.append(0)
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.data.extend(raw)
        self.views.append(view)
        count = int(array.shape[0])
        acc = {"bufferView": len(self.views) - 1, "componentType": component, "count": count, "type": kind}
        if normalized:
            acc["normalized"] = True
        if minmax:
            flat = array.reshape(count, -1)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def key_times(frames: int, fps: float) -> np.ndarray:
    """float32 [frames + 1]: for each k the largest float32 <= k / fps (exactly 0 for k = 0).

    Rounding k / fps to the nearest float32 lands above it for some k (9 of 24 at 24 fps),
    and a player seeking to k / fps then still shows frame k - 1 under STEP interpolation;
    rounding down never does."""
    exact = np.arange(frames + 1, dtype=np.float64) / float(fps)
    t = exact.astype(np.float32)
    above = t.astype(np.float64) > exact
    t[above] = np.nextafter(t[above], np.float32(-np.inf))
    if not np.all(np.diff(t.astype(np.float64)) > 0):
        raise ValueError(f"key times not increasing for {frames} frames at {fps} fps")
    return t


def _mesh_entry(buf: _Buffer, mesh: "Mesh", rot: np.ndarray, name: str) -> dict:
    pos = (mesh.vertices.astype(np.float64) @ rot.T).astype(np.float32)
    lin = srgb_to_linear(mesh.colors.astype(np.float64))
    rgba = np.concatenate([lin, np.ones((len(lin), 1))], axis=1)
    col = np.round(rgba * 65535.0).astype(np.uint16)
    attrs = {
        "POSITION": buf.add(pos, "VEC3", _FLOAT, _ARRAY_BUFFER, minmax=True),
        "COLOR_0": buf.add(col, "VEC4", _USHORT, _ARRAY_BUFFER, normalized=True),
    }
    if len(mesh.vertices) <= 65535:
        idx = buf.add(mesh.faces.astype(np.uint16).reshape(-1), "SCALAR", _USHORT, _ELEMENT_ARRAY_BUFFER)
    else:
        idx = buf.add(mesh.faces.astype(np.uint32).reshape(-1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER)
    return {"name": name, "primitives": [{"attributes": attrs, "indices": idx, "material": 0, "mode": 4}]}


def glb_camera(baked: "BakedLoop") -> tuple[dict, list[float]]:
    """(glTF perspective camera, node matrix [16] column-major) of the loop's default
    camera in the glb's +Y-up frame."""
    cam = baked.camera
    rot = up_rotation(baked.up)
    c2w = np.asarray(cam["c2w"], dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = rot @ c2w[:3, :3]
    m[:3, 3] = rot @ c2w[:3, 3]
    yfov = 2.0 * math.atan(0.5 * float(cam["height"]) / float(cam["fy"]))
    camera = {
        "name": "default_camera",
        "type": "perspective",
        "perspective": {
            "yfov": yfov,
            "aspectRatio": float(cam["width"]) / float(cam["height"]),
            "znear": float(max(baked.near, 1e-3)),
            "zfar": float(baked.far),
        },
    }
    return camera, [float(v) for v in m.T.reshape(-1)]


def build_glb(
    static: "Mesh",
    frames: "Sequence[Mesh]",
    fps: float,
    up=(0.0, 1.0, 0.0),
    *,
    camera: tuple[dict, list[float]] | None = None,
    extras: dict | None = None,
    name: str = "loopnerf",
) -> bytes:
    """The .glb bytes of a static mesh plus one mesh per loop frame (module docstring).

    Args:
        static: the mesh shown in every frame (may be empty).
        frames: F meshes, frame k shown on [k / fps, (k + 1) / fps) (each may be empty).
        fps: playback rate, frames per second.
        up: the world's up vector (rotated to glTF's +Y).
        camera: (glTF camera, node matrix) from `glb_camera`, or None for no camera.
        extras: JSON-able values stored under the asset's extras["loopnerf"].
    """
    F = len(frames)
    if F < 1:
        raise ValueError("need at least one loop frame")
    rot = up_rotation(up)
    buf = _Buffer()
    meshes: list[dict] = []
    nodes: list[dict] = []
    for k, m in enumerate(frames):
        node: dict = {"name": f"frame_{k:04d}", "scale": [1.0, 1.0, 1.0] if k == 0 else [0.0, 0.0, 0.0]}
        if len(m.vertices) and len(m.faces):
            meshes.append(_mesh_entry(buf, m, rot, f"frame_{k:04d}"))
            node["mesh"] = len(meshes) - 1
        nodes.append(node)
    if len(static.vertices) and len(static.faces):
        meshes.append(_mesh_entry(buf, static, rot, "static"))
        nodes.append({"name": "static", "mesh": len(meshes) - 1})
    cameras = []
    if camera is not None:
        cameras.append(camera[0])
        nodes.append({"name": "default_camera", "camera": 0, "matrix": camera[1]})
    # Animation: F + 1 STEP keys at k / fps; node k visible on [k / fps, (k + 1) / fps).
    t_acc = buf.add(key_times(F, fps), "SCALAR", _FLOAT, minmax=True)
    samplers, channels = [], []
    for k in range(F):
        scale = np.zeros((F + 1, 3), np.float32)
        scale[k] = 1.0
        if k == 0:
            scale[F] = 1.0  # the closing key repeats frame 0's state
        out_acc = buf.add(scale, "VEC3", _FLOAT)
        samplers.append({"input": t_acc, "output": out_acc, "interpolation": "STEP"})
        channels.append({"sampler": k, "target": {"node": k, "path": "scale"}})
    root = {"name": name, "children": list(range(len(nodes)))}
    nodes.append(root)
    if not meshes:
        raise ValueError("nothing to write: every mesh is empty")
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "loopnerf export",
                  "extras": {"loopnerf": {"frames": F, "fps": float(fps), **(extras or {})}}},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"name": name, "nodes": [len(nodes) - 1]}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": [
            {
                "name": "baked_radiance",
                "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0},
                "doubleSided": True,
                "extensions": {"KHR_materials_unlit": {}},
            }
        ],
        "animations": [{"name": "loop", "samplers": samplers, "channels": channels}],
        "accessors": buf.accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": len(buf.data)}],
    }
    if cameras:
        gltf["cameras"] = cameras
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((4 - len(js) % 4) % 4)
    binary = bytes(buf.data) + b"\0" * ((4 - len(buf.data) % 4) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    out = struct.pack("<4sII", b"glTF", 2, total)
    out += struct.pack("<I4s", len(js), b"JSON") + js
    out += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return out


def export_glb(
    baked: "BakedLoop",
    out_dir: Path,
    *,
    stills: "Sequence[np.ndarray]" = (),
    options: "FusionOptions | None" = None,
    progress: bool = True,
    fused: "FusedLoop | None" = None,
) -> Path:
    """Write `out_dir/scene.glb`: the viewer's renders fused into a static mesh + one mesh
    per loop frame (`loopnerf.export.tsdf.fuse_loop` with the still cameras `stills` and
    `options`), played by the loop animation. `fused` reuses a fusion already made.
    Also writes `out_dir/scene.glb.json` with the fusion's figures (cameras, voxel size,
    vertex counts, seconds)."""
    from loopnerf.errors import LoopNeRFError
    from loopnerf.export.tsdf import fuse_loop

    if fused is None:
        fused = fuse_loop(baked, stills, options, progress=progress)
    if len(fused.static) == 0 and all(len(m) == 0 for m in fused.frames):
        raise LoopNeRFError("the fused surfaces are empty: the viewer shows nothing solid from the fusion cameras")
    data = build_glb(
        fused.static, fused.frames, baked.fps, baked.up, camera=glb_camera(baked),
        extras={"voxel": fused.voxel, "background": [float(c) for c in baked.background]},
    )
    path = Path(out_dir) / "scene.glb"
    path.write_bytes(data)
    stats = dict(fused.stats, bytes=len(data))
    (Path(out_dir) / "scene.glb.json").write_text(json.dumps(stats, indent=2))
    return path


def read_glb_json(path: Path) -> dict:
    """The JSON chunk of a .glb file (for checks and `loopnerf info`)."""
    data = Path(path).read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ValueError(f"{path}: not a glTF 2.0 binary")
    length, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON":
        raise ValueError(f"{path}: first chunk is not JSON")
    return json.loads(data[20 : 20 + length])
