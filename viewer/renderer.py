"""`Renderer`: real-time rendering of a baked `.loop` with one Taichi kernel.

The window (`loopnerf view`), headless videos and the benchmarks all call
`Renderer.render`, so what a user sees and what they export match.

Time convention: `render(c2w, time)` takes `time` in **seconds of playback**; the loop
phase is `p = (time * fps / F) mod 1` (fps and F from the .loop header), so frame k of
the loop shows at time k / fps and the loop repeats every F / fps seconds with no jump.
`render_phase(c2w, phase)` takes the phase p in [0, 1) directly (1.0 is 0.0 again).
Between the F baked samples the loop planes are interpolated linearly (periodically),
so playback at any speed is smooth.

Cameras are camera-to-world 4x4 matrices with OpenGL axes (looking down -Z, +Y up);
intrinsics default to the .loop's camera scaled to the render size (vertical field
of view kept; see `intrinsics_for`).

Two backends march the same rays through the same density-bound pyramid ("auto", the
default, takes the bricks when their grid fits its memory budget, else the planes;
`backend` and `backend_reason` say which and why):
- "bricks": the loop resampled at load time into a sparse brick grid
  (`bricks.build_bricks`: log density + a rank-k colour code per voxel corner, the
  moving bricks per loop frame), so a sample is one trilinear lookup (`brick_kernel`);
- "planes": the `.loop`'s planes evaluated at every sample (`render_kernel`, 3 bilinear
  + 3 linear lookups per scale and channel): exact to the file, 4.7x slower on a clean
  loop (README, "Viewer"); the
  twin the bricks are checked against, and what the bake's visibility pass uses.
"""

from __future__ import annotations

import os
import time as _time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

import numpy as np

from loopnerf.data.capture import Intrinsics  # re-exported by loopnerf.viewer

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.viewer.bricks import BrickGrid

Backend = Literal["auto", "bricks", "planes"]
STOP_TRANSMITTANCE = 1e-3  # a ray stops once less than this much light gets through
MIN_SAMPLE_WEIGHT = 1e-2
"""Bricks: a sample skips its colour lookup while its weight, plus that of the samples
skipped before it, is below this; the skipped weight takes the next looked-up colour
(the last one at the ray's end). Haze then costs one colour per 1 % of the pixel's
light. On the demo loop: 50.5 dB against looking up every colour, 6 % of the frame
time saved. The planes kernel (exact, for exports) looks up every sample over 1e-5."""
PLANES_MIN_SAMPLE_WEIGHT = 1e-5
SAMPLE_OPTICAL_DEPTH = 0.25  # most optical depth (density bound x length) one sample may cover
BRICK_SAMPLE_OPTICAL_DEPTH = 0.4
BRICK_STOP_TRANSMITTANCE = 1.0 / 255.0
"""The bricks' own march (the viewer's fast path; the planes keep the finer one above, as
the exact renderer that exports use): a sample may cover 0.4 of optical depth, and a ray
stops once under one 8-bit step of light gets through (SNeRG's 1/255). On the demo loop
(12-view orbit, 320x240): 26.4 -> 21.5 samples a ray; fidelity against the exact
integral at the still cameras min 37.53 -> 37.25 dB, mean 40.06 -> 39.19 dB (bar 35).
0.5 takes 19.8 samples a ray at 36.94 dB worst, but an earlier session's loop fell to
34.9 dB worst there, so 0.4 keeps a margin."""
BRICK_LIGHT_FLOOR = 0.05
"""The bricks' march budget follows the light left (`march.light_scaled`): with T of a
ray's light left, a sample may cover 0.4 / T of optical depth and a cell under 1e-4 / T
is skipped (T floored at this), since an error in a sample's alpha costs the pixel T
times as much. Behind the first half of a surface the march takes long steps instead
of one per cell. On the demo loop (24-view orbit, 320x240): 21.5 -> 14.7 samples a ray,
1.33x the frame rate, fidelity against the exact integral 39.33 -> 38.32 dB worst,
39.91 -> 38.71 dB mean (floor 0.2: 15.7 samples a ray, 38.38 dB worst). Off while
recording visibility, so culling sees every cell a ray reaches."""
SKIP_OPTICAL_DEPTH = 1e-4  # a cell whose optical-depth bound along the ray is below this is skipped
DEPTH_KINDS = ("expected", "median")  # what `render_phase_with_opacity` reports as depth
EXPORT_BACKEND = "planes"
"""The backend the exporters render with: they draw a few small images (the layers 24 at
the default camera's size, the glb's fusion 11 cameras x F), where building the brick
grid (20 s for the demo loop) costs more than it saves; the planes are also the exact one."""
FRAME_PAIR_BOUNDS_MAX_BYTES = 256 << 20
"""The bricks' density pyramids of every frame pair (f, f + 1) are kept on the device when
they fit in this, so a frame uploads none (the demo loop: 29 MB; uploading its pair's
1.2 MB each frame cost ~3 ms of a frame); larger ones are uploaded per frame pair."""
UNBOUNDED = 1e30  # the density bound of an occupied cell in a .loop without `density_max`


def _to_numpy(t, dtype) -> np.ndarray:
    """A torch tensor or array -> contiguous numpy array of `dtype`."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(t), dtype=dtype)


class Renderer:
    """Renders a baked loop at any camera and playback time (Taichi CUDA or CPU).

    Args:
        loop: a `BakedLoop` or the path of a `.loop` file (read with `load_loop`, which
            raises `LoopFormatError` for a missing or invalid file).
        width, height: image size in pixels (change later with `resize`).
        arch: "cuda", "cpu" or None (CUDA when a GPU is there, else CPU). Taichi starts
            on the first render (never at import), with its offline cache on.
        step_scale: scales the marching: the step in dense cells (the .loop's `step`)
            and the optical depth one sample may cover in faint ones
            (`SAMPLE_OPTICAL_DEPTH`, bricks `BRICK_SAMPLE_OPTICAL_DEPTH`); 1 = as baked, 2 about halves the samples per ray
            for speed at some loss of accuracy (the window does this while moving).
        backend: "auto" (default: "bricks" when the brick grid fits
            `bricks.MAX_MEGABYTES`, else "planes"), "bricks" (fast; any size) or
            "planes" (exact to the file's planes).
        bricks: a prebuilt `BrickGrid` of this loop (else built here for "bricks").
        progress: called as progress(done, total) while the brick grid builds (about
            10-16 s for the demo loop on a 2-core CPU), e.g. `data.progress.progress_callback`.
        cache: read the brick grid from the brick cache when this loop's grid is there,
            and store it there once built (`brick_cache`: `$LOOPNERF_CACHE_DIR`, default
            ~/.cache/loopnerf; about 1.5 s to read the demo loop's 0.59 GB grid back).

    Attributes: `build_seconds` (brick grid build or cache read at load time, plus the
    per-frame bounds; 0 for "planes"); `bricks_source` ("built", "cache" or "given");
    after the first render `compile_seconds` (Taichi start + kernel compile, measured
    on a tiny warm-up image) and `last_frame_seconds` (the latest render's wall time,
    steady state).
    """

    def __init__(self, loop: Union["BakedLoop", str, os.PathLike], width: int, height: int, *, arch: str | None = None,
                 step_scale: float = 1.0, backend: Backend = "auto", bricks: "BrickGrid | None" = None,
                 progress=None, cache: bool = True):
        if isinstance(loop, (str, os.PathLike)):
            from loopnerf.export.loop_format import load_loop

            loop = load_loop(Path(loop))
        self.loop = loop
        self._arch_request = arch
        if not step_scale > 0:
            raise ValueError(f"step_scale must be > 0, got {step_scale}")
        self.step_scale = float(step_scale)
        if backend not in ("auto", "bricks", "planes"):
            raise ValueError(f"backend must be 'auto', 'bricks' or 'planes', got {backend!r}")
        self.backend = backend
        self._progress = progress  # (done, total) callback for the brick grid's build
        self.backend_reason = "requested"
        self.bricks = bricks
        self._cache = bool(cache)
        self.bricks_source = "given" if bricks is not None else ""
        self.cache_note = ""
        self.build_seconds = 0.0
        self.arch: str | None = None
        self.compile_seconds: float | None = None
        self.last_frame_seconds: float | None = None
        self.frames = int(loop.frames)
        self.fps = float(loop.fps)
        self.background = tuple(float(c) for c in loop.background)
        self._pack_scene()
        self._gpu = None  # device copies of the scene arrays (Taichi ndarrays), made lazily
        self._last_samples = None  # the latest render's samples-per-ray ndarray
        self.width = 0
        self.height = 0
        self.resize(width, height)

    # ------------------------------------------------------------------ set-up
    def _pack_scene(self) -> None:
        """Flatten the scene into the layout the backend's kernel reads (float32)."""
        loop = self.loop
        self.n_channels = int(loop.features)
        self.n_scales = len(loop.scales)
        self._occupancy = _to_numpy(loop.occupancy, np.uint8)
        self._density_mip, self._mip_meta = density_pyramid(self._occupancy, loop.density_max)
        if self.bricks is not None and self.backend == "auto":
            self.backend = "bricks"
        if self.backend in ("auto", "bricks") and self.bricks is None:
            t0 = _time.perf_counter()
            self._load_or_build_bricks(loop)
            self.build_seconds = _time.perf_counter() - t0
        self._pack_planes()  # cheap (a copy of the planes); `collapse_loop_planes` serves both
        self._frame_mips = None
        if self.backend == "bricks":
            # Exact per-frame bounds from the bricks (tighter than the file's bound over all
            # phases and neighbours): the march skips where nothing is at this phase.
            bounds_t0 = _time.perf_counter()
            occ = self._occupancy > 0
            bounds = self.bricks.frame_density_bounds(self._occupancy.shape)
            if loop.unbounded:
                # The shell is marched in pieces whose ends are tested, not cell by cell: a
                # piece may cut the corner of a cell neither end is in, so each cell's bound
                # covers its neighbours there (as the file's own bound does).
                bounds = _dilate_max(bounds)
            self._frame_mips = [density_pyramid(occ, np.where(occ, b, 0.0))[0] for b in bounds]
            self._mip_frames = None
            self.build_seconds += _time.perf_counter() - bounds_t0

    def _load_or_build_bricks(self, loop) -> None:
        """Set `self.bricks` for the "auto" / "bricks" backends: from the brick cache when
        this loop's grid is there, else built (and stored there); "auto" falls back to the
        planes when the grid is over `bricks.MAX_MEGABYTES`."""
        from loopnerf.viewer import bricks as B
        from loopnerf.viewer import brick_cache

        auto = self.backend == "auto"
        key = brick_cache.grid_key(loop, B.build_settings()) if self._cache else None
        grid = None
        if key is not None:
            grid, self.cache_note = brick_cache.load_grid(key)
        try:
            if grid is not None:
                if auto and B.grid_megabytes(grid) > B.MAX_MEGABYTES:
                    raise B.BrickBudgetError(f"{B.grid_megabytes(grid):.0f} MB (budget {B.MAX_MEGABYTES:.0f} MB)")
                self.bricks, self.bricks_source = grid, "cache"
            else:
                self.bricks = B.build_bricks(loop, max_megabytes="default" if auto else None, progress=self._progress)
                self.bricks_source = "built"
        except B.BrickBudgetError as err:
            self.backend, self.backend_reason = "planes", f"brick grid over budget: {err}"
            return
        if auto:
            self.backend_reason = "auto: the brick grid fits its memory budget"
        self.backend = "bricks"
        if key is not None and self.bricks_source == "built":
            t0 = _time.perf_counter()
            path = brick_cache.store_grid(key, self.bricks)
            if path is not None:
                self.cache_note = f"stored in the cache ({path}, {_time.perf_counter() - t0:.1f} s)"

    def _pack_planes(self) -> None:
        """The planes backend's arrays: planes flat and channel-last, lines per phase."""
        loop = self.loop
        C, S = self.n_channels, self.n_scales
        static_chunks, static_meta, offset = [], [], 0
        for s in range(S):
            for plane in loop.static_planes[s]:  # xy [Ry, Rx, C], xz [Rz, Rx, C], yz [Rz, Ry, C]
                arr = _to_numpy(plane, np.float32)
                static_chunks.append(arr.reshape(-1))
                static_meta.append((offset, arr.shape[1], arr.shape[0]))  # (offset, W, H)
                offset += arr.size
        self._static_planes = np.concatenate(static_chunks)
        self._static_meta = np.asarray(static_meta, dtype=np.int32)
        # Loop planes kept as [F, R, C] float32; each frame collapses them into `_lines`.
        self._loop_planes = [_to_numpy(p, np.float32) for s in range(S) for p in loop.loop_planes[s]]
        line_meta, offset = [], 0
        for arr in self._loop_planes:
            line_meta.append((offset, arr.shape[1]))
            offset += arr.shape[1] * C
        self._line_meta = np.asarray(line_meta, dtype=np.int32)
        self._lines = np.zeros(offset, dtype=np.float32)
        self._sigma_weight = _to_numpy(loop.sigma_weight, np.float32).reshape(-1)
        self._sigma_bias = float(_to_numpy(loop.sigma_bias, np.float32).reshape(-1)[0])
        self._dir_table = _to_numpy(loop.dir_table, np.float32)
        region = loop.dynamic_region
        self._region = np.ones((1, 1, 1), np.uint8) if region is None else np.ascontiguousarray(_to_numpy(region, np.uint8))

    def _ensure_runtime(self) -> None:
        """Start Taichi, move the scene to the device and compile the kernel (once)."""
        if self._gpu is not None:
            return
        t0 = _time.perf_counter()
        from loopnerf.kernels.runtime import ensure_taichi_arch

        self.arch = ensure_taichi_arch(self._arch_request)
        import taichi as ti

        def upload(arr: np.ndarray, dtype):
            nd = ti.ndarray(dtype, shape=arr.shape)
            nd.from_numpy(arr)
            return nd

        from loopnerf.viewer.march import N_PARAMS

        self._gpu = {
            "density_mip": upload(self._density_mip, ti.f32),
            "mip_meta": upload(self._mip_meta, ti.i32),
            "params": ti.ndarray(ti.f32, shape=(N_PARAMS,)),
            "no_visibility": ti.ndarray(ti.f32, shape=(1,)),
            # [1, 1, 3] (unused) stands for "no sky": the kernels then composite the header's background
            "sky": upload(_to_numpy(self.loop.sky, np.float32) if self.loop.sky is not None
                          else np.zeros((1, 1, 3), np.float32), ti.f32),
        }
        if self.backend == "bricks":
            b = self.bricks
            self._gpu.update(
                slot=upload(b.slot, ti.i32), dynamic=upload(b.dynamic, ti.i32),
                log_density=upload(b.log_density, ti.f16), colour=upload(b.colour, ti.u8),
                colour_table=upload(b.colour_table, ti.f32),
            )
            n_cells, frames = self._frame_mips[0].size, len(self._frame_mips)
            if frames * n_cells * 4 <= FRAME_PAIR_BOUNDS_MAX_BYTES:
                # every pair (f, f + 1)'s bounds once, one after another; a frame passes
                # the pyramid offsets of its pair (the demo loop: 24 x 1.2 MB)
                pairs = np.concatenate([np.maximum(self._frame_mips[f], self._frame_mips[(f + 1) % frames])
                                        for f in range(frames)])
                self._gpu["pair_mips"] = upload(pairs, ti.f32)
                self._gpu["pair_metas"] = [upload(self._mip_meta + np.array([f * n_cells, 0, 0, 0], np.int32), ti.i32)
                                           for f in range(frames)]
        else:
            self._gpu.update(
                static_planes=upload(self._static_planes, ti.f32), static_meta=upload(self._static_meta, ti.i32),
                line_meta=upload(self._line_meta, ti.i32), sigma_weight=upload(self._sigma_weight, ti.f32),
                dir_table=upload(self._dir_table, ti.f32), lines=ti.ndarray(ti.f32, shape=self._lines.shape),
                region=upload(self._region, ti.u8),
            )
        self._targets = {}
        # Warm-up on a 2x2 image compiles the kernel (or loads it from the offline cache).
        width, height = self.width, self.height
        self._render_into(np.eye(4, dtype=np.float32), 0.0, self.intrinsics_for(2, 2))
        self.compile_seconds = _time.perf_counter() - t0
        self.width, self.height = width, height

    def _target(self, width: int, height: int):
        """Output and scratch ndarrays for one image size (kept for reuse)."""
        key = (width, height)
        if key not in self._targets:
            import taichi as ti

            if len(self._targets) > 8:  # sizes change while a window is resized or moves: keep few
                self._targets.clear()
            scratch = (height * width) if self.backend == "planes" else 1  # the planes kernel's per-pixel rows
            self._targets[key] = (
                ti.ndarray(ti.u8, shape=(height, width, 3)),
                ti.ndarray(ti.f32, shape=(height, width)),
                ti.ndarray(ti.f32, shape=(height, width)),
                ti.ndarray(ti.i32, shape=(height, width)),
                ti.ndarray(ti.f32, shape=(scratch, self.n_channels * self.n_scales)),
                ti.ndarray(ti.f32, shape=(scratch, 3, self.n_channels * self.n_scales)),
            )
        return self._targets[key]

    def describe(self) -> str:
        """One line on which backend draws and what it cost to set up."""
        if self.backend == "bricks":
            st = self.bricks.stats
            how = {"cache": "read from the brick cache", "given": "given"}.get(self.bricks_source, "built")
            return (f"renderer: bricks ({st['bricks']} bricks, {st['dynamic_bricks']} moving, {st['megabytes']:.0f} MB, "
                    f"{how} in {self.build_seconds:.1f} s)")
        return f"renderer: planes ({self.backend_reason})"

    # ------------------------------------------------------------------ cameras
    def resize(self, width: int, height: int) -> None:
        """Set the image size (pixels) used by `render` when no intrinsics are given."""
        width, height = int(width), int(height)
        if width < 1 or height < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width, self.height = width, height

    def intrinsics_for(self, width: int, height: int) -> Intrinsics:
        """The .loop camera's intrinsics for an image of width x height pixels.

        The focal lengths scale with the height (the vertical field of view is kept, so
        a wider window shows more at the sides), the principal point keeps its relative
        position. For the .loop's own size this is exactly its camera.
        """
        return self.intrinsics_of(self.loop, width, height)

    @staticmethod
    def intrinsics_of(loop: "BakedLoop", width: int, height: int) -> Intrinsics:
        """`intrinsics_for` of a baked loop, without a renderer."""
        cam = Intrinsics.from_dict(loop.camera)
        k = height / float(cam.height)
        return Intrinsics(
            fx=cam.fx * k,
            fy=cam.fy * k,
            cx=cam.cx / cam.width * width,
            cy=cam.cy / cam.height * height,
            width=int(width),
            height=int(height),
        )

    def default_c2w(self) -> np.ndarray:
        """[4, 4] float32 camera-to-world of the .loop's default camera (OpenGL axes)."""
        return np.asarray(self.loop.camera["c2w"], dtype=np.float32)

    # ------------------------------------------------------------------ time
    def phase_at(self, seconds: float) -> float:
        """Loop phase in [0, 1) at `seconds` of playback: (seconds * fps / F) mod 1."""
        return float(np.mod(seconds * self.fps / self.frames, 1.0))

    def collapse_loop_planes(self, phase: float) -> np.ndarray:
        """The loop planes at `phase` (periodic, linear between the F samples).

        Sample position u = (phase mod 1) * F; returns the flat float32 buffer of every
        [R, C] line (xt, yt, zt per scale) the kernel reads, = (1 - a) L[i] + a L[i+1 mod F].
        """
        from loopnerf.export.reference_render import frame_blend

        i0, i1, a = frame_blend(phase, self.frames)
        a = np.float32(a)
        C = self.n_channels
        for arr, (offset, length) in zip(self._loop_planes, self._line_meta):
            out = self._lines[offset : offset + length * C].reshape(length, C)
            np.multiply(arr[i0], 1.0 - a, out=out)
            out += a * arr[i1]
        return self._lines

    # ------------------------------------------------------------------ rendering
    def render(self, c2w, time: float, *, intrinsics: Intrinsics | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Render at `time` seconds of playback (phase = (time * fps / F) mod 1).

        Args:
            c2w: [4, 4] camera-to-world (OpenGL axes), array or tensor.
            time: seconds since the loop's start (any real number; the loop repeats).
            intrinsics: pixels; default `intrinsics_for(self.width, self.height)`.
        Returns:
            rgb uint8 [H, W, 3] (background from the .loop header where the rays miss)
            and depth float32 [H, W]: expected distance along the unit ray (world
            units), sum(w_i t_i) + (1 - opacity) * far — what the rays miss counts at
            `far`, as in `loopnerf.export.reference_render`.
        """
        return self.render_phase(c2w, self.phase_at(time), intrinsics=intrinsics)

    def render_phase(self, c2w, phase: float, *, intrinsics: Intrinsics | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Render at loop phase `phase` (in [0, 1), periodic). Same outputs as `render`."""
        rgb, depth, _ = self.render_phase_with_opacity(c2w, phase, intrinsics=intrinsics)
        return rgb, depth

    def render_phase_with_opacity(self, c2w, phase: float, *, intrinsics: Intrinsics | None = None,
                                  depth: str = "expected"):
        """`render_phase` plus opacity float32 [H, W] (1 - final transmittance).

        depth: "expected" (as `render`) or "median": the distance along the unit ray at
        which the transmittance falls to 1/2 (where half the light comes from nearer),
        `far` where the opacity stays under 1/2. On a hazy field the median lies on the
        surface the pixel shows, where the expected depth is pulled towards the haze in
        front of and behind it (the glb export fuses it: `loopnerf.export.tsdf`).
        """
        if depth not in DEPTH_KINDS:
            raise ValueError(f"depth: one of {DEPTH_KINDS}, got {depth!r}")
        self._ensure_runtime()
        intr = intrinsics or self.intrinsics_for(self.width, self.height)
        t0 = _time.perf_counter()
        out = self._render_into(c2w, phase, intr, median_depth=depth == "median")
        self.last_frame_seconds = _time.perf_counter() - t0
        return out

    def last_samples_per_ray(self) -> np.ndarray:
        """int32 [H, W]: field evaluations per ray in the latest render (cost diagnostics)."""
        if self._last_samples is None:
            raise RuntimeError("nothing rendered yet")
        return self._last_samples.to_numpy()

    def record_visibility(self, views, *, progress=None, floor: float = 0.0) -> np.ndarray:
        """Visibility of the grid cells: the largest weight T * alpha any sample of the
        given views puts in each level-0 cell of the density pyramid (SNeRG's culling
        criterion).

        views: iterable of (c2w [4, 4], phase in [0, 1), Intrinsics). progress: called
        as progress(done, total). floor: weights up to this need not be exact (a culling
        threshold): a ray stops once its transmittance is under it, since no later
        sample can weigh more; every cell whose largest weight is over `floor` gets
        exactly that weight, the others at most it. Returns float32 [Gx, Gy, Gz] (the
        occupancy grid's shape). Colour is not computed (only densities matter).
        """
        import taichi as ti

        self._ensure_runtime()
        views = list(views)
        grid = ti.ndarray(ti.f32, shape=(int(np.prod(self._occupancy.shape)),))
        grid.fill(0.0)
        for i, (c2w, phase, intr) in enumerate(views):
            self._render_into(c2w, phase, intr, visibility=grid, stop_below=floor)
            if progress is not None:
                progress(i + 1, len(views))
        return grid.to_numpy().reshape(self._occupancy.shape)

    def _render_into(self, c2w, phase: float, intr: Intrinsics, visibility=None, median_depth: bool = False,
                     stop_below: float = 0.0):
        from loopnerf.viewer import march as m

        loop = self.loop
        c2w = _to_numpy(c2w, np.float32).reshape(4, 4)
        params = np.zeros(m.N_PARAMS, dtype=np.float32)
        params[m.P_C2W : m.P_C2W + 12] = c2w[:3, :4].reshape(-1)
        params[m.P_FX], params[m.P_FY] = intr.fx, intr.fy
        params[m.P_CX], params[m.P_CY] = intr.cx, intr.cy
        params[m.P_BOX_MIN : m.P_BOX_MIN + 3] = loop.box[0]
        params[m.P_BOX_MAX : m.P_BOX_MAX + 3] = loop.box[1]
        params[m.P_NEAR], params[m.P_FAR], params[m.P_STEP] = loop.near, loop.far, loop.step * self.step_scale
        params[m.P_BG : m.P_BG + 3] = self.background
        bricks = self.backend == "bricks"
        min_weight = MIN_SAMPLE_WEIGHT if bricks else PLANES_MIN_SAMPLE_WEIGHT
        params[m.P_MIN_ALPHA] = np.inf if visibility is not None else min_weight
        params[m.P_STOP_T] = max(BRICK_STOP_TRANSMITTANCE if bricks else STOP_TRANSMITTANCE, stop_below)
        params[m.P_TAU] = (BRICK_SAMPLE_OPTICAL_DEPTH if bricks else SAMPLE_OPTICAL_DEPTH) * self.step_scale
        params[m.P_SKIP] = SKIP_OPTICAL_DEPTH
        params[m.P_RECORD] = 1.0 if visibility is not None else 0.0
        params[m.P_DEPTH_MEDIAN] = 1.0 if median_depth else 0.0
        params[m.P_CONTRACT] = 1.0 if loop.unbounded else 0.0
        params[m.P_LIGHT_FLOOR] = BRICK_LIGHT_FLOOR if bricks and visibility is None else 0.0
        g = self._gpu
        vis = visibility if visibility is not None else g["no_visibility"]
        rgb, depth, opacity, samples, feat_scratch, basis_scratch = self._target(intr.width, intr.height)
        if self.backend == "bricks":
            from loopnerf.export.reference_render import frame_blend
            from loopnerf.viewer import brick_kernel

            b = self.bricks
            g["params"].from_numpy(params)
            f0, f1, blend = frame_blend(phase, self.frames)
            if "pair_mips" in g:  # (f1 is f0 + 1: `frame_blend`)
                mips, meta = g["pair_mips"], g["pair_metas"][f0]
            else:
                if self._mip_frames != (f0, f1):
                    g["density_mip"].from_numpy(np.maximum(self._frame_mips[f0], self._frame_mips[f1]))
                    self._mip_frames = (f0, f1)
                mips, meta = g["density_mip"], g["mip_meta"]
            brick_kernel.render_bricks_kernel(
                g["slot"], g["dynamic"], g["log_density"], g["colour"], g["colour_table"], mips,
                meta, g["params"], rgb, depth, opacity, samples, vis, g["sky"], f0, f1, blend,
                b.cells[0], b.cells[1], b.cells[2], b.brick, b.rank, brick_kernel.TILE,
            )
        else:
            params[m.P_SIGMA_BIAS] = self._sigma_bias
            g["params"].from_numpy(params)
            g["lines"].from_numpy(self.collapse_loop_planes(phase))
            _kernel().render_loop_kernel(
                g["static_planes"], g["static_meta"], g["lines"], g["line_meta"], g["sigma_weight"],
                g["dir_table"], g["density_mip"], g["mip_meta"], g["params"], rgb, depth, opacity, samples,
                feat_scratch, basis_scratch, vis, g["sky"], g["region"],
                self.n_channels, self.n_scales,
            )
        self._last_samples = samples
        if visibility is not None:
            return None
        return rgb.to_numpy(), depth.to_numpy(), opacity.to_numpy()


def _dilate_max(bounds: np.ndarray) -> np.ndarray:
    """[F, Gx, Gy, Gz] -> the max over each cell's 3x3x3 neighbourhood, per frame."""
    import torch

    t = torch.as_tensor(bounds)[:, None]
    return torch.nn.functional.max_pool3d(t, kernel_size=3, stride=1, padding=1)[:, 0].numpy()


def density_pyramid(occupancy: np.ndarray, density_max=None, *, coarsest: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Density bounds per cell at every level of a max pyramid, as the kernel reads them.

    Level 0 is the baked grid [Gx, Gy, Gz]: the .loop's `density_max` (1/world unit)
    where the occupancy is set and 0 elsewhere (the occupancy decides what is empty,
    as in the reference renderer); without `density_max` an occupied cell is
    unbounded (it is marched at the base step, the renderer's behaviour before the
    bound existed). Level l + 1 holds the max over 2x2x2 cells of level l (odd sizes
    round up), down to `coarsest` cells along the longest axis.

    Returns (flat float32 values of all levels, meta [L, 4] int32 of (offset, gx, gy, gz)).
    """
    occ = np.asarray(occupancy) > 0
    if density_max is None:
        level = np.where(occ, np.float32(UNBOUNDED), np.float32(0.0))
    else:
        bound = _to_numpy(density_max, np.float32)
        level = np.where(occ, bound, np.float32(0.0)).astype(np.float32)
    levels = [np.ascontiguousarray(level, dtype=np.float32)]
    while max(levels[-1].shape) > coarsest:
        prev = levels[-1]
        pad = [(0, dim % 2) for dim in prev.shape]
        padded = np.pad(prev, pad, constant_values=0.0)
        gx, gy, gz = (d // 2 for d in padded.shape)
        levels.append(np.ascontiguousarray(padded.reshape(gx, 2, gy, 2, gz, 2).max(axis=(1, 3, 5))))
    meta, offset = [], 0
    for lv in levels:
        meta.append((offset, *lv.shape))
        offset += lv.size
    return np.concatenate([lv.reshape(-1) for lv in levels]), np.asarray(meta, dtype=np.int32)


class FrameCache:
    """Replays rendered loop frames while the camera is still (DESIGN §7).

    A still camera sees the same F images over and over; `get(c2w, frame, size)`
    renders frame k (phase k / F) once per camera and size and returns the stored
    image afterwards. Any change of camera, size or mode empties the cache.
    """

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self._key = None
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.hits = 0

    def get(self, c2w, frame: int, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, depth) of loop frame `frame` (mod F) seen by `c2w` with `intrinsics`."""
        key = (np.asarray(c2w, dtype=np.float32).tobytes(), intrinsics)
        if key != self._key:
            self._key = key
            self._frames.clear()
        k = int(frame) % self.renderer.frames
        if k in self._frames:
            self.hits += 1
        else:
            self._frames[k] = self.renderer.render_phase(c2w, k / self.renderer.frames, intrinsics=intrinsics)
        return self._frames[k]


_KERNEL_MODULE = None


def _kernel():
    """The kernel module, imported on first use (it imports taichi)."""
    global _KERNEL_MODULE
    if _KERNEL_MODULE is None:
        from loopnerf.viewer import render_kernel

        _KERNEL_MODULE = render_kernel
    return _KERNEL_MODULE
