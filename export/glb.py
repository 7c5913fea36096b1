"""glTF 2.0 binary export: one vertex-coloured mesh per loop frame, played as a loop.

Layout written (by hand, so the animation is exactly what we want):
- node k holds mesh k (frame k's marching-cubes surface: POSITION, NORMAL, COLOR_0);
- one animation, "loop": for every node a `scale` channel with STEP interpolation
  over F + 1 keyframes at times i / fps (i = 0..F), scale 1 at key k and 0 at the
  others (the last key repeats the first state so the clip lasts exactly F / fps and
  players that loop the clip never jump);
- node k's rest scale is 1 for frame 0 and 0 otherwise, so a static viewer shows frame 0;
- an unlit material (KHR_materials_unlit): the colours are already shaded radiance.
Coordinates: glTF is +Y up, so the world is rotated to take the header's `up` to +Y;
units are the scene's world units. COLOR_0 is linear RGB (glTF's convention), converted
from the display (sRGB) colours the field renders.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.export.surface import Surface

_FLOAT = 5126
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


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Display sRGB in [0, 1] -> linear RGB (IEC 61966-2-1)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class _Buffer:
    """Accumulates binary data and the glTF bufferViews/accessors that describe it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, kind: str, component: int, target: int | None = None, minmax: bool = False) -> int:
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
        if minmax:
            flat = array.reshape(count, -1)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def build_glb(surfaces: "list[Surface]", fps: float, up=(0.0, 1.0, 0.0), name: str = "loopnerf") -> bytes:
    """The .glb bytes for one surface per loop frame (see module docstring)."""
    F = len(surfaces)
    rot = up_rotation(up).astype(np.float32)
    buf = _Buffer()
    meshes, nodes = [], []
    for k, s in enumerate(surfaces):
        node: dict = {"name": f"frame_{k:04d}", "scale": [1.0, 1.0, 1.0] if k == 0 else [0.0, 0.0, 0.0]}
        if len(s.vertices):
            pos = (s.vertices @ rot.T).astype(np.float32)
            nrm = (s.normals @ rot.T).astype(np.float32)
            col = srgb_to_linear(s.colors).astype(np.float32)
            attrs = {
                "POSITION": buf.add(pos, "VEC3", _FLOAT, _ARRAY_BUFFER, minmax=True),
                "NORMAL": buf.add(nrm, "VEC3", _FLOAT, _ARRAY_BUFFER),
                "COLOR_0": buf.add(col, "VEC3", _FLOAT, _ARRAY_BUFFER),
            }
            idx = buf.add(s.faces.astype(np.uint32).reshape(-1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER)
            meshes.append({"name": f"frame_{k:04d}", "primitives": [{"attributes": attrs, "indices": idx, "material": 0, "mode": 4}]})
            node["mesh"] = len(meshes) - 1
        nodes.append(node)
    # Animation: F + 1 STEP keys at i / fps; node k visible on [k / fps, (k + 1) / fps).
    times = (np.arange(F + 1, dtype=np.float32) / np.float32(fps)).astype(np.float32)
    t_acc = buf.add(times, "SCALAR", _FLOAT, minmax=True)
    samplers, channels = [], []
    for k in range(F):
        scale = np.zeros((F + 1, 3), np.float32)
        scale[k] = 1.0
        if k == 0:
            scale[F] = 1.0  # the closing key repeats frame 0's state
        out_acc = buf.add(scale, "VEC3", _FLOAT)
        samplers.append({"input": t_acc, "output": out_acc, "interpolation": "STEP"})
        channels.append({"sampler": k, "target": {"node": k, "path": "scale"}})
    root = {"name": name, "children": list(range(F))}
    gltf = {
        "asset": {"version": "2.0", "generator": "loopnerf export"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"name": name, "nodes": [F]}],
        "nodes": nodes + [root],
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
        "extras": {"loopnerf": {"frames": F, "fps": float(fps)}},
    }
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((4 - len(js) % 4) % 4)
    binary = bytes(buf.data) + b"\0" * ((4 - len(buf.data) % 4) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    out = struct.pack("<4sII", b"glTF", 2, total)
    out += struct.pack("<I4s", len(js), b"JSON") + js
    out += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return out


def export_glb(baked: "BakedLoop", out_dir: Path, *, resolution: int = 64, iso: float | None = None, progress: bool = True) -> Path:
    """Write `out_dir/scene.glb` (one mesh per loop frame + the loop animation)."""
    from loopnerf.export.surface import loop_surfaces

    surfaces = loop_surfaces(baked, resolution, iso, progress=progress)
    path = Path(out_dir) / "scene.glb"
    path.write_bytes(build_glb(surfaces, baked.fps, baked.up))
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
