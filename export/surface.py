"""Iso-surfaces of a baked loop, one per loop frame (for the glb and ply exports).

The density of frame k (phase k / F) is sampled on a regular grid of nodes over the
scene box, marching cubes (scikit-image) extracts the surface at an iso level, and
each vertex is coloured with the baked colour seen from the default camera
(`query_color` along the direction from the camera to the vertex), which is what
the loop shows there from its reference view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop


@dataclass
class Surface:
    """One frame's surface, world units: vertices [V, 3] float32, faces [T, 3] int32
    (counter-clockwise seen from outside), normals [V, 3] (outward, unit), colors
    [V, 3] float32 display RGB in [0, 1]."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    colors: np.ndarray


def grid_nodes(resolution: int) -> np.ndarray:
    """Normalised node coordinates [G, G, G, 3] (x, y, z) of a grid spanning [-1, 1]^3."""
    a = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
    return np.stack(np.meshgrid(a, a, a, indexing="ij"), axis=-1)


def default_iso_level(baked: "BakedLoop", resolution: int) -> float:
    """Density (per world unit) at which one grid cell is half opaque:
    ln 2 / (mean cell size in world units)."""
    extent = np.subtract(baked.box[1], baked.box[0])
    cell = float(np.mean(extent)) / (resolution - 1)
    return math.log(2.0) / cell


def density_grids(baked: "BakedLoop", phases, resolution: int, progress: bool = False) -> np.ndarray:
    """Density [P, G, G, G] (index order x, y, z; per world unit) at the nodes of a
    grid spanning the box, at each loop phase (factored lattice evaluation)."""
    import torch

    from loopnerf.export.lattice import lattice_logits

    a = torch.linspace(-1.0, 1.0, resolution)
    with torch.no_grad():
        logits = lattice_logits(baked, a, a, a, list(phases), progress="density grids" if progress else None)
        dens = torch.exp(logits + baked.sigma_bias.float()[0] - 1.0)
    return dens.numpy()


def density_grid(baked: "BakedLoop", phase: float, resolution: int) -> np.ndarray:
    """Density [G, G, G] (index order x, y, z) at the grid nodes at loop phase p."""
    return density_grids(baked, [phase], resolution)[0]


def extract_surface(
    baked: "BakedLoop", phase: float, resolution: int = 64, iso: float | None = None, dens: np.ndarray | None = None
) -> Surface:
    """Marching-cubes surface of the density at loop phase p (world coordinates).

    Args:
        resolution: grid nodes per axis over the scene box.
        iso: density level (per world unit); default `default_iso_level`.
        dens: the phase's density grid if already computed (`density_grids`).
    Returns an empty Surface (0 vertices) when the density never reaches the level.
    """
    import torch
    from skimage.measure import marching_cubes

    from loopnerf.export.reference_render import normalized_to_world, query_color

    if iso is None:
        iso = default_iso_level(baked, resolution)
    if dens is None:
        dens = density_grid(baked, phase, resolution)
    if not (dens.max() > iso > dens.min()):
        empty = np.zeros((0, 3), np.float32)
        return Surface(empty, np.zeros((0, 3), np.int32), empty, empty)
    # Pad with zero density so surfaces touching the box are closed.
    padded = np.pad(dens, 1, mode="constant", constant_values=0.0)
    spacing = 2.0 / (resolution - 1)
    verts, faces, normals, _ = marching_cubes(padded, level=iso, spacing=(spacing,) * 3, gradient_direction="descent")
    verts = verts - spacing - 1.0  # undo the pad, to normalised coordinates
    verts = np.clip(verts, -1.0, 1.0).astype(np.float32)
    x = torch.from_numpy(verts)
    world = normalized_to_world(baked, x)
    cam = torch.tensor(baked.camera["c2w"], dtype=torch.float32)[:3, 3]
    view = world - cam
    view = view / view.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    with torch.no_grad():
        colors = query_color(baked, x, view, phase).numpy().astype(np.float32)
    # Normals: marching cubes gives them in normalised coordinates; the box scale is
    # diagonal, so world normals are n / scale, renormalised.
    scale = np.subtract(baked.box[1], baked.box[0]) / 2.0
    n = normals / scale
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    return Surface(world.numpy().astype(np.float32), faces.astype(np.int32), n.astype(np.float32), colors)


def loop_surfaces(baked: "BakedLoop", resolution: int = 64, iso: float | None = None, progress: bool = True) -> list[Surface]:
    """One Surface per loop frame k = 0 .. F-1 (phase k / F)."""
    from loopnerf.errors import LoopNeRFError

    phases = [k / baked.frames for k in range(baked.frames)]
    grids = density_grids(baked, phases, resolution, progress=progress)
    surfaces = [extract_surface(baked, p, resolution, iso, dens=g) for p, g in zip(phases, grids)]
    if all(len(s.vertices) == 0 for s in surfaces):
        level = default_iso_level(baked, resolution) if iso is None else iso
        raise LoopNeRFError(
            f"no surface at density level {level:.3g} in any loop frame; pass a lower --iso"
        )
    return surfaces
