"""Visibility culling of a baked loop: keep only the cells some capture camera saw.

A radiance field fitted to one video keeps faint matter wherever nothing forbade it:
outside the captured views, behind surfaces, in the corners of the box. None of it
is needed to reproduce the capture, all of it costs the viewer samples, and from a
new viewpoint it shows as haze. SNeRG and PlenOctrees keep a voxel only if its
largest weight T * alpha over the training rays is above a small threshold; this
module does the same for the `.loop` occupancy grid:

    visibility[cell] = max over the capture's rays and their samples in the cell of T * alpha

computed by the viewer's exact renderer (the "planes" backend, which evaluates the
file's planes at every sample) with the marching the viewer uses, then
`occupancy &= dilate(visibility > min_weight)`. The dilation by `dilate` cells keeps
a margin around what was seen, so a nearby novel view does not lose the edges of a
surface.

An unbounded loop (contraction 'mipnerf360') is culled inside its box only: the
contracted shell around the box is the far background itself, and where no camera saw
it a culled cell shows the flat background colour instead of the field's guess. On the
far-backdrop demo capture, culling the shell too took the novel orbit's static PSNR to
14.56 dB mean, 9.56 dB worst frame; the box alone: see README "Unbounded capture".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.data.capture import Intrinsics
    from loopnerf.export.loop_format import BakedLoop

MIN_WEIGHT = 0.005  # SNeRG's culling threshold on the largest weight of a voxel
DILATE_CELLS = 1
MAX_VIEW_PIXELS = 128 * 128  # the visibility pass renders views at most this size


def culling_views(c2w: np.ndarray, intrinsics: Sequence["Intrinsics"], frames: int,
                  max_pixels: int = MAX_VIEW_PIXELS) -> list[tuple[np.ndarray, float, "Intrinsics"]]:
    """(c2w, loop phase, intrinsics) per capture frame for `visibility_grid`.

    c2w [N, 4, 4] camera-to-world (OpenGL axes), one `Intrinsics` per frame. Frame i is
    seen at loop phase (i mod F) / F (the loop's phases are spread over the capture),
    its intrinsics scaled down to at most `max_pixels` pixels (the culling is per cell of
    the occupancy grid, far coarser than a pixel)."""
    views = []
    for i, (pose, k) in enumerate(zip(np.asarray(c2w), intrinsics)):
        factor = min(1.0, float(np.sqrt(max_pixels / float(k.width * k.height))))
        views.append((np.asarray(pose, dtype=np.float32), (i % frames) / frames, k.scaled(factor) if factor < 1.0 else k))
    return views


def visibility_grid(baked: "BakedLoop", views: Iterable[tuple[Any, float, "Intrinsics"]], *,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """float32 [Gx, Gy, Gz]: the largest weight T * alpha of any sample of the views
    in each occupancy cell (0 where no ray of theirs put any weight)."""
    from loopnerf.viewer.renderer import Renderer

    renderer = Renderer(baked, 2, 2, backend="planes")
    return renderer.record_visibility(views, progress=progress)


def box_cells(shape: Sequence[int]) -> "torch.Tensor":
    """bool [Gx, Gy, Gz]: the occupancy cells of an unbounded loop that lie inside its box
    (field coordinates [-1/2, 1/2]^3; a cell counts when its centre does)."""
    import torch

    inside = [((torch.arange(g, dtype=torch.float64) + 0.5) * 2.0 / g - 1.0).abs() <= 0.5 for g in shape]
    return inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]


def cull_invisible(baked: "BakedLoop", views: Sequence[tuple[Any, float, "Intrinsics"]], *,
                   min_weight: float = MIN_WEIGHT, dilate: int = DILATE_CELLS,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Clear the occupancy of the cells no view weighs more than `min_weight`, in place.

    Records the culling in the header (`baked.extra["culling"]`: min_weight, dilate,
    views, occupied fractions before and after) and returns that record plus the
    pass's seconds.
    """
    import torch

    if not views:
        raise ValueError("visibility culling needs at least one camera view")
    t0 = time.perf_counter()
    vis = visibility_grid(baked, views, progress=progress)
    seen = torch.as_tensor(vis > float(min_weight), dtype=torch.float32)
    if dilate > 0:
        k = 2 * int(dilate) + 1
        seen = torch.nn.functional.max_pool3d(seen[None, None], kernel_size=k, stride=1, padding=int(dilate))[0, 0]
    if baked.unbounded:
        seen = torch.maximum(seen, 1.0 - box_cells(seen.shape).float())
    before = float(baked.occupancy.float().mean())
    baked.occupancy = (baked.occupancy.bool() & (seen > 0)).to(torch.uint8).contiguous()
    record = {
        "min_weight": float(min_weight),
        "dilate": int(dilate),
        "views": len(views),
        "occupied_before": round(before, 5),
        "occupied_after": round(float(baked.occupancy.float().mean()), 5),
    }
    baked.extra["culling"] = record
    return {**record, "seconds": round(time.perf_counter() - t0, 2)}
