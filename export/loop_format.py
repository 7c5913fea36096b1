"""The baked `.loop` file, format versions 1 and 2: write, read and validate.

A `.loop` file is a safetensors file (never pickle: reading one never runs code).
Its metadata holds one key, `"loopnerf"`, whose value is a JSON object (the header);
the tensors are the planes, decoder weights and occupancy grid. The contract is
`docs/ARCHITECTURE.md`, section "Baked .loop format, versions 1 and 2":

    static.{s}.xy / .xz / .yz   float16 [Ry_s, Rx_s, C] / [Rz_s, Rx_s, C] / [Rz_s, Ry_s, C]
    loop.{s}.xt / .yt / .zt     float16 [F, Rx_s, C] / [F, Ry_s, C] / [F, Rz_s, C]
    decoder.sigma_weight        float32 [C * S]
    decoder.sigma_bias          float32 [1]
    decoder.dir_table           float32 [Hd, Wd, 3, C * S]   (lat-long map of unit directions)
    occupancy                   uint8   [Gx, Gy, Gz]          (1 = the cell may hold density)
    density_max                 float16 [Gx, Gy, Gz]          (optional: density bound per cell)
    dynamic_region              uint8   [D, D, D]             (optional: 1 = the loop planes act)
    sky                         float16 [Hs, Ws, 3]           (version 2, optional: RGB at infinity)

with `R*_s = resolution * scales[s]`, S = len(scales), F = frames. `load_loop` checks
every header field's type and range, every tensor's presence, dtype, shape (derived
from the header) and finiteness, and raises `LoopFormatError` naming the file and
the problem for anything else (truncated file, foreign file, wrong version, ...).

Version 2 is version 1 plus unbounded scenes: header field `contraction` may be
"mipnerf360", and then every grid and plane lives in contracted coordinates
(`loopnerf.fields.field.contract` of the normalised point: the box is the middle half
of the cube [-1, 1]^3, everything beyond it the shell out to its faces). A bounded
scene is still written as version 1, which earlier readers keep reading.

Only numpy/json/safetensors are needed to read the header; torch is imported when
tensors are built.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopnerf.errors import LoopNeRFError

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT_NAME = "loopnerf.loop"
FORMAT_VERSION = 2
"""The newest version this LoopNeRF reads and writes (`version_for` picks the lowest
version that holds a file's contents)."""
READABLE_VERSIONS = (1, 2)
CONTRACTIONS = {1: ("none",), 2: ("none", "mipnerf360")}
"""The scene contractions each format version may hold."""
METADATA_KEY = "loopnerf"
STATIC_PAIRS = ("xy", "xz", "yz")
OPTIONAL_TENSORS = ("density_max", "dynamic_region", "sky")  # may be absent from a file
LOOP_PAIRS = ("xt", "yt", "zt")


def version_for(contraction: str) -> int:
    """The lowest format version that holds a scene with this contraction."""
    for version in READABLE_VERSIONS:
        if contraction in CONTRACTIONS[version]:
            return version
    raise LoopFormatError(f"no .loop format version holds contraction {contraction!r}")


class LoopFormatError(LoopNeRFError):
    """A `.loop` file cannot be read: not safetensors, truncated, foreign, wrong
    version, or a header field / tensor that is missing, mistyped, misshaped or
    non-finite. The message names the file and the problem."""


@dataclass
class BakedLoop:
    """A baked loop: the header fields as typed attributes plus the tensors.

    Coordinates: the scene box `box` (world units, (min, max) corners) maps affinely
    per axis onto the normalised cube [-1, 1]^3 where the planes live. Loop phase
    p in [0, 1) is the field time coordinate 2p - 1, periodic over the F samples.

    Tensors (channel-last, torch):
        static_planes[s] = [xy [Ry_s, Rx_s, C], xz [Rz_s, Rx_s, C], yz [Rz_s, Ry_s, C]] float16
        loop_planes[s]   = [xt [F, Rx_s, C],    yt [F, Ry_s, C],    zt [F, Rz_s, C]]    float16
        sigma_weight [C * S] float32, sigma_bias [1] float32
        dir_table [Hd, Wd, 3, C * S] float32: colour basis per unit direction
            (row theta / pi * (Hd - 1), theta = acos(d . up-axis y); column
            (atan2(d_z, d_x) + pi) / (2 pi) * Wd, periodic; bilinear)
        occupancy [Gx, Gy, Gz] uint8 (1 = may hold density)
        density_max [Gx, Gy, Gz] float16 or None (optional): an upper bound on the
            density (1/world unit) in each cell and its neighbours over the loop;
            renderers size their steps with it. Files without it are still valid.
        dynamic_region [D, D, D] uint8 or None (optional; any D >= 1, index [ix, iy, iz]
            over the normalised cube, voxel i spanning [-1 + 2i/D, -1 + 2(i+1)/D)): 1 where
            the loop planes act; at a point in a 0 voxel every loop plane reads as ones
            (the static scene, the same in every frame). None = everywhere (1).
        sky [Hs, Ws, 3] float16 or None (version 2, unbounded scenes; optional): RGB in
            [0, 1] at infinity per ray direction, the lat-long map of `dir_table`; what a
            ray shows behind the field instead of `background`.

    Header fields:
        box: ((xmin, ymin, zmin), (xmax, ymax, zmax)) world units
        contraction: "none" (bounded: the planes span the box) or, from version 2,
            "mipnerf360" (unbounded: the planes span the contracted cube, see above)
        frames: F, loop length in frames; fps: playback rate (frames per second)
        decoder: "linear" (the only one either version bakes)
        scales: plane resolution multipliers per scale; features: C per plane
        resolution: (Rx, Ry, Rz) at multiplier 1
        occupancy_resolution: (Gx, Gy, Gz); density_threshold: occupancy cut (1/world unit)
        camera: default camera {"c2w": 4x4 camera-to-world (OpenGL axes), "fx", "fy",
            "cx", "cy" (pixels), "width", "height"}
        up: world up vector; background: RGB in [0, 1] composited behind the scene
        near, far: ray range along unit directions (world units)
        step: suggested ray-marching step (world units)
    """

    box: tuple[tuple[float, float, float], tuple[float, float, float]]
    frames: int
    fps: float
    scales: tuple[int, ...]
    features: int
    resolution: tuple[int, int, int]
    occupancy_resolution: tuple[int, int, int]
    density_threshold: float
    camera: dict[str, Any]
    up: tuple[float, float, float]
    background: tuple[float, float, float]
    near: float
    far: float
    step: float
    static_planes: list[list["torch.Tensor"]]
    loop_planes: list[list["torch.Tensor"]]
    sigma_weight: "torch.Tensor"
    sigma_bias: "torch.Tensor"
    dir_table: "torch.Tensor"
    occupancy: "torch.Tensor"
    density_max: "torch.Tensor | None" = None
    dynamic_region: "torch.Tensor | None" = None
    sky: "torch.Tensor | None" = None
    contraction: str = "none"
    decoder: str = "linear"
    format: str = FORMAT_NAME
    version: int = 1
    """The version the file was read as; a file is written as `version_for(contraction)`."""
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ helpers
    @property
    def unbounded(self) -> bool:
        """Whether the planes and grids live in contracted coordinates (version 2's
        contraction 'mipnerf360') rather than over the box."""
        return self.contraction != "none"

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def feature_dim(self) -> int:
        """Length C * S of a sample's feature vector."""
        return self.features * len(self.scales)

    def scale_resolution(self, s: int) -> tuple[int, int, int]:
        """(Rx_s, Ry_s, Rz_s) of scale index s."""
        m = self.scales[s]
        return tuple(int(r * m) for r in self.resolution)  # type: ignore[return-value]

    def box_tensor(self) -> "torch.Tensor":
        """[2, 3] float32: box min and max corners (world units)."""
        import torch

        return torch.tensor(self.box, dtype=torch.float32)

    def header(self) -> dict[str, Any]:
        """The JSON header as written to the file (plain Python types)."""
        cam = self.camera
        header = {
            "format": self.format,
            "version": version_for(self.contraction),
            "box": [[float(v) for v in self.box[0]], [float(v) for v in self.box[1]]],
            "contraction": self.contraction,
            "frames": int(self.frames),
            "fps": float(self.fps),
            "decoder": self.decoder,
            "scales": [int(s) for s in self.scales],
            "features": int(self.features),
            "resolution": [int(r) for r in self.resolution],
            "occupancy_resolution": [int(r) for r in self.occupancy_resolution],
            "density_threshold": float(self.density_threshold),
            "camera": {
                "c2w": [[float(v) for v in row] for row in cam["c2w"]],
                "fx": float(cam["fx"]),
                "fy": float(cam["fy"]),
                "cx": float(cam["cx"]),
                "cy": float(cam["cy"]),
                "width": int(cam["width"]),
                "height": int(cam["height"]),
            },
            "up": [float(v) for v in self.up],
            "background": [float(v) for v in self.background],
            "near": float(self.near),
            "far": float(self.far),
            "step": float(self.step),
        }
        header.update(self.extra)
        return header

    def tensors(self) -> dict[str, "torch.Tensor"]:
        """Name -> tensor, as stored in the file (contiguous, CPU)."""
        out: dict[str, Any] = {}
        for s, planes in enumerate(self.static_planes):
            for name, t in zip(STATIC_PAIRS, planes):
                out[f"static.{s}.{name}"] = t
        for s, planes in enumerate(self.loop_planes):
            for name, t in zip(LOOP_PAIRS, planes):
                out[f"loop.{s}.{name}"] = t
        out["decoder.sigma_weight"] = self.sigma_weight
        out["decoder.sigma_bias"] = self.sigma_bias
        out["decoder.dir_table"] = self.dir_table
        out["occupancy"] = self.occupancy
        if self.density_max is not None:
            out["density_max"] = self.density_max
        if self.dynamic_region is not None:
            out["dynamic_region"] = self.dynamic_region
        if self.sky is not None:
            out["sky"] = self.sky
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def content_hash(self) -> str:
        """SHA-256 (hex) of what the file holds: the header (sorted JSON) and every tensor
        (name, dtype, shape, bytes, by name). Two loops that would be written alike hash
        alike, whatever their path; the key of derived data such as the viewer's brick
        grid cache."""
        import hashlib

        import torch

        h = hashlib.sha256(json.dumps(self.header(), sort_keys=True).encode())
        for name, t in sorted(self.tensors().items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def in_dynamic_region(self, x: "torch.Tensor") -> "torch.Tensor":
        """bool [N]: normalised points x [N, 3] where the loop planes act (all True without
        a `dynamic_region`; points outside the cube take the border voxel)."""
        import torch

        from loopnerf.fields.dynamic_region import voxels_contain

        if self.dynamic_region is None:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return voxels_contain(self.dynamic_region, x)

    def expected_shapes(self, dir_table_size: tuple[int, int] | None = None, region_size: int | None = None,
                        sky_size: tuple[int, int] | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
        """Name -> (shape, dtype name) of every tensor, derived from the header (those in
        `OPTIONAL_TENSORS` may be absent).

        The direction table's (Hd, Wd) is free (any size >= (2, 1)); pass the size
        found in the file, else the one of `self.dir_table` is used.
        """
        if dir_table_size is None:
            dir_table_size = (int(self.dir_table.shape[0]), int(self.dir_table.shape[1]))
        C, F = self.features, self.frames
        out: dict[str, tuple[tuple[int, ...], str]] = {}
        for s in range(len(self.scales)):
            rx, ry, rz = self.scale_resolution(s)
            out[f"static.{s}.xy"] = ((ry, rx, C), "float16")
            out[f"static.{s}.xz"] = ((rz, rx, C), "float16")
            out[f"static.{s}.yz"] = ((rz, ry, C), "float16")
            out[f"loop.{s}.xt"] = ((F, rx, C), "float16")
            out[f"loop.{s}.yt"] = ((F, ry, C), "float16")
            out[f"loop.{s}.zt"] = ((F, rz, C), "float16")
        out["decoder.sigma_weight"] = ((C * len(self.scales),), "float32")
        out["decoder.sigma_bias"] = ((1,), "float32")
        out["decoder.dir_table"] = ((dir_table_size[0], dir_table_size[1], 3, C * len(self.scales)), "float32")
        out["occupancy"] = (tuple(int(g) for g in self.occupancy_resolution), "uint8")
        out["density_max"] = (tuple(int(g) for g in self.occupancy_resolution), "float16")
        d = region_size if region_size is not None else (int(self.dynamic_region.shape[0]) if self.dynamic_region is not None else 1)
        out["dynamic_region"] = ((d, d, d), "uint8")
        if self.unbounded:  # version 2: an unbounded scene may carry its sky
            if sky_size is None:
                sky_size = (int(self.sky.shape[0]), int(self.sky.shape[1])) if self.sky is not None else (2, 1)
            out["sky"] = ((int(sky_size[0]), int(sky_size[1]), 3), "float16")
        return out

    def summary(self) -> str:
        """Human-readable header summary (used by `loopnerf info`)."""
        cam = self.camera
        lines = [
            f"format        {self.format} v{self.version}",
            f"loop          {self.frames} frames at {self.fps:g} fps ({self.frames / self.fps:.2f} s)",
            f"box           {list(self.box[0])} .. {list(self.box[1])} (contraction: {self.contraction})",
            f"planes        {self.features} features x scales {list(self.scales)} at base resolution {list(self.resolution)}",
            f"decoder       {self.decoder} (direction table {list(self.dir_table.shape[:2])})",
            f"occupancy     {list(self.occupancy_resolution)} grid, "
            f"{float(self.occupancy.float().mean()) * 100:.1f}% occupied (threshold {self.density_threshold:g})",
            "density bound " + (
                "none (the viewer marches every occupied cell at `step`)" if self.density_max is None else
                f"per cell, median {float(self.density_max.float().median()):.3g}, "
                f"max {float(self.density_max.float().max()):.3g} per world unit"
            ),
            "dynamic region " + (
                "everywhere (the loop planes act at every point)" if self.dynamic_region is None else
                f"{list(self.dynamic_region.shape)} grid, {float(self.dynamic_region.float().mean()) * 100:.1f}% of the box "
                "(elsewhere the static scene)"
            ),
            f"camera        {cam['width']}x{cam['height']} px, fx {cam['fx']:.1f}, "
            f"position {[round(float(r[3]), 3) for r in cam['c2w'][:3]]}",
            f"up            {list(self.up)}; background {list(self.background)}"
            + ("" if self.sky is None else f"; sky at infinity {list(self.sky.shape[:2])} lat-long map"),
            f"near / far    {self.near:g} / {self.far:g}; step {self.step:g}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------- writing
def save_loop(path: str | os.PathLike, baked: BakedLoop) -> Path:
    """Write `baked` to `path` atomically (temporary file in the same folder, then
    `os.replace`), so a crash never leaves a half-written `.loop` behind.

    The baked loop is validated first with the same checks `load_loop` applies
    (a file we write can always be read back). Returns the path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    header = baked.header()
    tensors = baked.tensors()
    # Validate what we are about to write with the reader's own checks.
    _validate(header, tensors, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(header)})
        # mkstemp creates the file 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ---------------------------------------------------------------------- reading
def read_loop_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a `.loop` file, after checking the safetensors framing
    (without reading or validating the tensors). Raises LoopFormatError."""
    header, _ = _read_framing(Path(path))
    return header


def load_loop(path: str | os.PathLike) -> BakedLoop:
    """Read and fully validate a `.loop` file.

    Checks: safetensors framing (8-byte header length, JSON header, tensor byte
    ranges inside the file), the `loopnerf` metadata (format name, version, every
    field's type and range), every tensor present (and no unknown one) with the
    dtype and shape the header implies, all floats finite, occupancy values 0/1.
    Raises `LoopFormatError` naming the file and the problem; never unpickles.
    """
    path = Path(path)
    name = str(path)
    header, st_header = _read_framing(path)
    _validate_header(header, name)  # before reading tensors: a wrong version stops here
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise LoopFormatError(f"{name}: cannot read the tensors ({err})") from err
    baked = _validate(header, tensors, name)
    return baked


def _read_framing(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the safetensors framing (`read_safetensors_header`) and parse the loopnerf
    header from its metadata, so every failure has a clear message.

    Returns (loopnerf header, safetensors header)."""
    from loopnerf.safetensors_header import read_safetensors_header

    name = str(path)
    st_header = read_safetensors_header(path, what="a .loop file", error=LoopFormatError)
    meta = st_header.get("__metadata__")
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        raise LoopFormatError(
            f"{name}: a safetensors file but not a .loop file (no '{METADATA_KEY}' header in its metadata)"
        )
    try:
        header = json.loads(meta[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as err:
        raise LoopFormatError(f"{name}: the '{METADATA_KEY}' header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise LoopFormatError(f"{name}: the '{METADATA_KEY}' header is not a JSON object")
    return header, st_header


# ------------------------------------------------------------------- validation
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(float(v))


def _field(header: dict[str, Any], key: str, name: str) -> Any:
    if key not in header:
        raise LoopFormatError(f"{name}: header field '{key}' is missing")
    return header[key]


def _num(header: dict, key: str, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    v = _field(header, key, name)
    if not _is_num(v):
        raise LoopFormatError(f"{name}: header field '{key}' must be a finite number, got {v!r}")
    if positive and not v > 0:
        raise LoopFormatError(f"{name}: header field '{key}' must be > 0, got {v!r}")
    if nonneg and not v >= 0:
        raise LoopFormatError(f"{name}: header field '{key}' must be >= 0, got {v!r}")
    return float(v)


def _pos_int(header: dict, key: str, name: str) -> int:
    v = _field(header, key, name)
    if not _is_int(v) or v < 1:
        raise LoopFormatError(f"{name}: header field '{key}' must be a positive integer, got {v!r}")
    return int(v)


def _vec(v: Any, n: int, key: str, name: str, *, ints: bool = False) -> tuple:
    ok = isinstance(v, list) and len(v) == n and all((_is_int(x) and x >= 1) if ints else _is_num(x) for x in v)
    if not ok:
        kind = "positive integers" if ints else "finite numbers"
        raise LoopFormatError(f"{name}: header field '{key}' must be a list of {n} {kind}, got {v!r}")
    return tuple(int(x) if ints else float(x) for x in v)


def _validate_header(header: dict[str, Any], name: str) -> dict[str, Any]:
    """Check the header's name, version and every field; return typed values."""
    fmt = header.get("format")
    if fmt != FORMAT_NAME:
        raise LoopFormatError(f"{name}: header field 'format' is {fmt!r}, expected {FORMAT_NAME!r}")
    version = header.get("version")
    if not _is_int(version):
        raise LoopFormatError(f"{name}: header field 'version' must be an integer, got {version!r}")
    if version not in READABLE_VERSIONS:
        raise LoopFormatError(
            f"{name}: unsupported .loop format version {version} (this LoopNeRF reads versions "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)})"
        )
    box = _field(header, "box", name)
    if not (isinstance(box, list) and len(box) == 2):
        raise LoopFormatError(f"{name}: header field 'box' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {box!r}")
    lo = _vec(box[0], 3, "box", name)
    hi = _vec(box[1], 3, "box", name)
    if not all(h > l for l, h in zip(lo, hi)):
        raise LoopFormatError(f"{name}: header field 'box' must have max > min on every axis, got {box!r}")
    contraction = _field(header, "contraction", name)
    if contraction not in CONTRACTIONS[version]:
        allowed = " or ".join(repr(c) for c in CONTRACTIONS[version])
        raise LoopFormatError(f"{name}: header field 'contraction' is {contraction!r}; version {version} supports only {allowed}")
    decoder = _field(header, "decoder", name)
    if decoder != "linear":
        raise LoopFormatError(f"{name}: header field 'decoder' is {decoder!r}; the format bakes only 'linear'")
    frames = _pos_int(header, "frames", name)
    fps = _num(header, "fps", name, positive=True)
    scales = _field(header, "scales", name)
    if not (isinstance(scales, list) and scales and all(_is_int(s) and s >= 1 for s in scales)):
        raise LoopFormatError(f"{name}: header field 'scales' must be a non-empty list of positive integers, got {scales!r}")
    features = _pos_int(header, "features", name)
    resolution = _vec(_field(header, "resolution", name), 3, "resolution", name, ints=True)
    occ_res = _vec(_field(header, "occupancy_resolution", name), 3, "occupancy_resolution", name, ints=True)
    threshold = _num(header, "density_threshold", name, nonneg=True)
    cam = _field(header, "camera", name)
    if not isinstance(cam, dict):
        raise LoopFormatError(f"{name}: header field 'camera' must be an object, got {cam!r}")
    c2w = cam.get("c2w")
    if not (isinstance(c2w, list) and len(c2w) == 4 and all(isinstance(r, list) and len(r) == 4 and all(_is_num(x) for x in r) for r in c2w)):
        raise LoopFormatError(f"{name}: header field 'camera.c2w' must be a 4x4 list of finite numbers")
    camera: dict[str, Any] = {"c2w": [[float(x) for x in r] for r in c2w]}
    for k in ("fx", "fy"):
        camera[k] = _num(cam, k, name + " (camera)", positive=True)
    for k in ("cx", "cy"):
        camera[k] = _num(cam, k, name + " (camera)")
    for k in ("width", "height"):
        camera[k] = _pos_int(cam, k, name + " (camera)")
    up = _vec(_field(header, "up", name), 3, "up", name)
    if sum(u * u for u in up) <= 0:
        raise LoopFormatError(f"{name}: header field 'up' must be a non-zero vector")
    background = _vec(_field(header, "background", name), 3, "background", name)
    if not all(0.0 <= c <= 1.0 for c in background):
        raise LoopFormatError(f"{name}: header field 'background' must be RGB in [0, 1], got {list(background)}")
    near = _num(header, "near", name, nonneg=True)
    far = _num(header, "far", name, positive=True)
    if not far > near:
        raise LoopFormatError(f"{name}: header fields 'near' ({near}) and 'far' ({far}) must satisfy near < far")
    step = _num(header, "step", name, positive=True)
    known = {"format", "version", "box", "contraction", "decoder", "frames", "fps", "scales", "features",
             "resolution", "occupancy_resolution", "density_threshold", "camera", "up", "background",
             "near", "far", "step"}
    extra = {k: v for k, v in header.items() if k not in known}
    if "culling" in extra:
        _validate_culling(extra["culling"], name)
    return dict(version=int(version), box=(lo, hi), contraction=contraction, decoder=decoder, frames=frames, fps=fps,
                scales=tuple(int(s) for s in scales), features=features, resolution=resolution,
                occupancy_resolution=occ_res, density_threshold=threshold, camera=camera, up=up,
                background=background, near=near, far=far, step=step, extra=extra)


def _validate_culling(culling: Any, name: str) -> None:
    """The optional 'culling' header object written by visibility culling
    (`loopnerf.export.visibility`): min_weight >= 0, dilate and views >= 0 integers,
    occupied fractions in [0, 1]."""
    if not isinstance(culling, dict):
        raise LoopFormatError(f"{name}: header field 'culling' must be an object, got {culling!r}")
    _num(culling, "min_weight", name + " (culling)", nonneg=True)
    for key in ("dilate", "views"):
        v = _field(culling, key, name + " (culling)")
        if not _is_int(v) or v < 0:
            raise LoopFormatError(f"{name}: header field 'culling.{key}' must be an integer >= 0, got {v!r}")
    for key in ("occupied_before", "occupied_after"):
        v = _num(culling, key, name + " (culling)", nonneg=True)
        if v > 1.0:
            raise LoopFormatError(f"{name}: header field 'culling.{key}' must be a fraction in [0, 1], got {v!r}")


def _validate(header: dict[str, Any], tensors: dict[str, Any], name: str) -> BakedLoop:
    """Validate header and tensors together; return the BakedLoop."""
    import torch

    fields = _validate_header(header, name)
    table = tensors.get("decoder.dir_table")
    if table is None:
        raise LoopFormatError(f"{name}: tensor 'decoder.dir_table' is missing")
    if table.dim() != 4 or table.shape[0] < 2 or table.shape[1] < 1:
        raise LoopFormatError(
            f"{name}: tensor 'decoder.dir_table' must be [Hd >= 2, Wd >= 1, 3, C*S], got shape {list(table.shape)}"
        )
    probe = BakedLoop(static_planes=[], loop_planes=[], sigma_weight=None, sigma_bias=None,  # type: ignore[arg-type]
                      dir_table=table, occupancy=None, **fields)  # type: ignore[arg-type]
    region = tensors.get("dynamic_region")
    region_size = int(region.shape[0]) if region is not None and region.dim() == 3 and region.shape[0] >= 1 else 1
    sky = tensors.get("sky")
    sky_size = (int(sky.shape[0]), int(sky.shape[1])) if sky is not None and sky.dim() == 3 else None
    if sky_size is not None and (sky_size[0] < 2 or sky_size[1] < 1):
        raise LoopFormatError(f"{name}: tensor 'sky' must be [Hs >= 2, Ws >= 1, 3], got shape {list(sky.shape)}")
    expected = probe.expected_shapes((int(table.shape[0]), int(table.shape[1])), region_size, sky_size)
    for key in tensors:
        if key not in expected:
            raise LoopFormatError(f"{name}: unexpected tensor '{key}' (not part of format version {fields['version']})")
    for key, (shape, dtype) in expected.items():
        t = tensors.get(key)
        if t is None and key in OPTIONAL_TENSORS:
            continue
        if t is None:
            raise LoopFormatError(f"{name}: tensor '{key}' is missing")
        if not isinstance(t, torch.Tensor):
            raise LoopFormatError(f"{name}: tensor '{key}' is not a tensor ({type(t).__name__})")
        if str(t.dtype).replace("torch.", "") != dtype:
            raise LoopFormatError(f"{name}: tensor '{key}' has dtype {str(t.dtype).replace('torch.', '')}, expected {dtype}")
        if tuple(t.shape) != shape:
            raise LoopFormatError(
                f"{name}: tensor '{key}' has shape {list(t.shape)}, expected {list(shape)} (from the header)"
            )
        if t.dtype.is_floating_point:
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                raise LoopFormatError(
                    f"{name}: tensor '{key}' holds {int(bad.sum())} non-finite value(s) (NaN or inf)"
                )
    occ = tensors["occupancy"]
    if bool((occ > 1).any()):
        raise LoopFormatError(f"{name}: tensor 'occupancy' must hold only 0 and 1")
    bound = tensors.get("density_max")
    if bound is not None and bool((bound < 0).any()):
        raise LoopFormatError(f"{name}: tensor 'density_max' must hold only values >= 0")
    S = len(fields["scales"])
    probe.static_planes = [[tensors[f"static.{s}.{p}"] for p in STATIC_PAIRS] for s in range(S)]
    probe.loop_planes = [[tensors[f"loop.{s}.{p}"] for p in LOOP_PAIRS] for s in range(S)]
    probe.sigma_weight = tensors["decoder.sigma_weight"]
    probe.sigma_bias = tensors["decoder.sigma_bias"]
    probe.occupancy = occ
    if region is not None and bool((region > 1).any()):
        raise LoopFormatError(f"{name}: tensor 'dynamic_region' must hold only 0 and 1")
    if sky is not None and bool(((sky < 0) | (sky > 1)).any()):
        raise LoopFormatError(f"{name}: tensor 'sky' must hold RGB values in [0, 1]")
    probe.density_max = bound
    probe.dynamic_region = region
    probe.sky = sky
    return probe
