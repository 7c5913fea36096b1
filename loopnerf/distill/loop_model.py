"""The loop model: the stage-1 field with its space-time planes replaced by looping ones.

Frozen: the three space planes of every scale, the decoder (density head and colour
basis / MLP), and the proposal fields (evaluated without time dependence, so a ray's
samples are the same at every phase). Trainable: per scale, three loop planes
(xt, yt, zt) of shape `[F, R_i, C]` (channel-last; H = the F loop samples), sampled with
a periodic time axis.

The loop's base (`base="mean"`, the default, or `"ones"`; distillation's `init` option
picks the start of the loop planes, `loopnerf.distill.train.DistillConfig`):
- `"mean"`: unless given another start, every loop plane starts as its stage-1 space-time
  plane averaged over time (constant along the loop's time axis), and the proposal fields use their own time
  planes averaged over time. Stage 1's space-time planes carry static structure (they
  vary along their space axis; neither the L1 nor the time-smoothness prior forbids it),
  so this start is close to the scene stage 1 fitted, frozen at its time average (not
  exactly: a product of time averages is not the time average of the products). This time-mean is also the loop's *anchor*:
  the L1 prior pulls the loop planes towards it and `static=True` renders it.
- `"ones"`: the report's literal start (time planes as ones, proposals likewise); where
  stage 1 put static structure into its time planes this is a scene that is not there.

A loop model renders with `phase` in [0, 1) where stage 1 took capture time: loop
frame k is phase k / F and reads loop sample k exactly.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from loopnerf.errors import ConfigError
from loopnerf.fields.dynamic_region import DynamicRegion, split_by_region
from loopnerf.fields.kplanes import SPACE_TIME_PAIRS, interpolate_features
from loopnerf.fields.field import KPlanesField
from loopnerf.model.kplanes_model import KPlanesModel

LOOP_PAIRS = ("xt", "yt", "zt")


BASES = ("mean", "ones")


def _time_mean(plane: torch.Tensor, times=None) -> torch.Tensor:
    """[R, C] a space-time plane [Rt, R, C] averaged over its time axis: over every sample,
    or (times given, capture times in [0, 1]) over its values at those times (linear)."""
    plane = plane.detach()
    if times is None:
        return plane.mean(dim=0)
    rt = plane.shape[0]
    pos = torch.as_tensor(np.asarray(times, dtype=np.float64), dtype=torch.float32).clamp(0, 1) * (rt - 1)
    i0 = pos.floor().long().clamp(0, rt - 1)
    i1 = (i0 + 1).clamp_max(rt - 1)
    f = (pos - i0.float())[:, None, None]
    return (plane[i0] * (1 - f) + plane[i1] * f).mean(dim=0)


def time_mean_planes(grid, times=None) -> list[torch.Tensor]:
    """[R_i, C] per space-time plane of a 4D `KPlanesGrid` (scale-major, xt / yt / zt):
    the plane averaged over its time axis (over all samples, or at `times` [T] in [0, 1])."""
    return [_time_mean(p, times) for p in grid.space_time_planes()]


def time_constant_proposals(proposals: nn.ModuleList, times=None) -> nn.ModuleList:
    """Frozen copies of the proposal fields whose space-time planes are replaced by their
    average over time (over all samples, or at `times` [T] in [0, 1]; a 2-sample plane,
    constant along t): density without time dependence."""
    import copy

    out = copy.deepcopy(proposals)
    for prop in out:
        grid = prop.grid
        if grid.dim != 4:
            continue
        for s in range(len(grid.multiscale)):
            for k in SPACE_TIME_PAIRS:
                p = grid.planes[s * 6 + k]
                grid.planes[s * 6 + k] = nn.Parameter(_time_mean(p, times)[None].expand(2, -1, -1).clone())
    for p in out.parameters():
        p.requires_grad_(False)
    return out


class LoopField(nn.Module):
    """`forward(x [R, S, 3], phase [R], dirs [R, 3], static=False) -> (density, rgb)`.

    `base` ("mean" / "ones", see the module docstring) sets the anchor planes
    `anchor[s * 3 + m]` [R_i, C]: the start of the loop planes when `init` is None, the
    target of the L1 prior, and what `static=True` evaluates in place of the loop planes.
    """

    def __init__(self, base: KPlanesField, frames: int, init: list[torch.Tensor] | None = None, anchor: str = "mean", anchor_times=None) -> None:
        super().__init__()
        if anchor not in BASES:
            raise ConfigError(f"loop base must be one of {BASES}, got {anchor!r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.frames = int(frames)
        self.anchor_kind = anchor
        grid = base.grid
        means = time_mean_planes(grid, anchor_times) if anchor == "mean" else None
        self.loop_planes = nn.ParameterList()
        for s, m in enumerate(grid.multiscale):
            for axis in range(3):
                r = grid.base_resolution[axis] * m
                a = means[s * 3 + axis] if means is not None else torch.ones(r, grid.features)
                self.register_buffer(f"anchor_{s}_{axis}", a.clone(), persistent=False)
                if init is not None:
                    p = init[s * 3 + axis].detach().clone()
                else:
                    p = a[None].expand(self.frames, -1, -1).clone()
                self.loop_planes.append(nn.Parameter(p))

    def anchors(self) -> list[torch.Tensor]:
        """The anchor planes [R_i, C], in `loop_planes` order."""
        return [getattr(self, f"anchor_{s}_{a}") for s in range(self.n_scales) for a in range(3)]

    @property
    def n_scales(self) -> int:
        return len(self.base.grid.multiscale)

    def planes_by_scale(self) -> list[list[torch.Tensor]]:
        """Per scale the 6 planes in hex-plane order (xy, xz, xt, yz, yt, zt): frozen space
        planes with the loop planes in the time slots."""
        return [[sp[0], sp[1], lp[0], sp[2], lp[1], lp[2]] for sp, lp in zip(self.base.grid.static_planes_by_scale(), self.loop_planes_by_scale())]

    def loop_planes_by_scale(self) -> list[list[torch.Tensor]]:
        """Per scale the 3 loop planes [xt, yt, zt], each [F, R_axis, C]."""
        return [[self.loop_planes[s * 3 + a] for a in range(3)] for s in range(self.n_scales)]

    def features(self, x: torch.Tensor, phase: torch.Tensor, static: bool = False, region: DynamicRegion | None = None) -> torch.Tensor:
        """[R, S, C * S_scales] at points x [R, S, 3] and phases [R]; outside `region` (the
        stage-1 dynamic region) stage 1's static part, exactly (the loop planes act
        only where stage 1's time planes did)."""
        r, s, _ = x.shape
        pts = x.reshape(-1, 3)

        def outside(idx):
            return self.base.grid.static_features(pts if idx is None else pts[idx])

        if static and self.anchor_kind == "ones":
            return outside(None).view(r, s, -1)
        planes = self.planes_by_scale()
        if static:  # the anchor: the loop planes' time-constant start
            anchors = self.anchors()
            for sc in range(self.n_scales):
                a = [anchors[sc * 3 + m][None].expand(2, -1, -1).contiguous() for m in range(3)]
                planes[sc] = [planes[sc][0], planes[sc][1], a[0], planes[sc][3], a[1], a[2]]
            phase = torch.zeros_like(phase)
        t = (phase * 2.0 - 1.0).to(x.dtype)[:, None, None].expand(r, s, 1)
        x4 = torch.cat([x, t], dim=-1).reshape(r * s, 4)

        def inside(idx):
            return interpolate_features(x4 if idx is None else x4[idx], planes, wrap_time=True, backend=self.base.grid.backend)

        return split_by_region(region, pts, inside, outside).view(r, s, -1)

    def features_at_phases(self, x: torch.Tensor, phases: torch.Tensor, region: DynamicRegion | None = None) -> torch.Tensor:
        """Features [F, R, S, C * S_scales] of points x [R, S, 3] (normalised cube) at every
        loop phase of `phases` [F]: the same as `features` at each phase, but with the Taichi
        kernels the frozen space planes are read once per point (`kernels.loop_features`)."""
        r, n, _ = x.shape
        pts = x.reshape(-1, 3)
        grid = self.base.grid
        f_ = phases.shape[0]
        with torch.no_grad():  # the space planes are frozen
            static = grid.static_features(pts)

        def inside(idx):
            p = pts if idx is None else pts[idx]
            if grid.backend == "taichi":
                from loopnerf.kernels.loop_features import loop_features

                return loop_features(p, phases, static if idx is None else static[idx], self.loop_planes_by_scale())
            # the twin: every point at every phase, as a 4D point
            t = (phases.to(p.dtype) * 2.0 - 1.0).repeat_interleave(p.shape[0])[:, None]
            x4 = torch.cat([p.repeat(f_, 1), t], dim=-1)
            return interpolate_features(x4, self.planes_by_scale(), wrap_time=True, backend=grid.backend).view(f_, p.shape[0], -1)

        if region is None or region.everywhere:
            return inside(None).reshape(f_, r, n, -1)
        # split_by_region works on [N, C]: phases go into the channels and back
        def inside_flat(idx):
            f = inside(idx)
            return f.permute(1, 0, 2).reshape(f.shape[1], -1)

        def outside_flat(idx):
            st = static if idx is None else static[idx]
            return st[:, None, :].expand(-1, f_, -1).reshape(st.shape[0], -1)

        f = split_by_region(region, pts, inside_flat, outside_flat)
        return f.view(r * n, f_, -1).permute(1, 0, 2).reshape(f_, r, n, -1)

    @property
    def decoder(self) -> torch.nn.Module:
        """Stage 1's decoder, frozen (the loop shares it)."""
        return self.base.decoder

    def density(self, x, phase, static: bool = False, region: DynamicRegion | None = None):
        return self.base.decoder.density(self.features(x, phase, static, region))

    def forward(self, x, phase, dirs, static: bool = False, region: DynamicRegion | None = None):
        return self.base.decoder(self.features(x, phase, static, region), dirs)

    def space_time_planes(self) -> list[torch.Tensor]:
        return list(self.loop_planes)


class LoopModel(KPlanesModel):
    """A `KPlanesModel` whose field is a `LoopField`; `forward(origins, dirs, phases)`.

    `base`: "mean" (default: loop planes and proposals start from stage 1's time planes
    averaged over time) or "ones" (time planes as ones); see the module docstring.
    `base_times`: with "mean", average over the stage-1 planes at these capture times [T]
    in [0, 1] (e.g. the frames of the segment the loop is distilled from) instead of over
    every time sample; stage 1's time planes differ from segment to segment.
    """

    def __init__(self, stage1: KPlanesModel, frames: int, init: list[torch.Tensor] | None = None, base: str = "mean", base_times=None) -> None:
        nn.Module.__init__(self)
        self.cfg = stage1.cfg
        self.register_buffer("box_min", stage1.box_min.clone())
        self.register_buffer("box_max", stage1.box_max.clone())
        self.field = LoopField(stage1.field, frames, init, anchor=base, anchor_times=base_times)
        self.dynamic_region = DynamicRegion(stage1.dynamic_region.resolution)
        self.dynamic_region.set(stage1.dynamic_region.grid)
        self.base_kind = base
        self.base_times = None if base_times is None else [float(t) for t in base_times]
        if base == "mean":
            self.proposals = time_constant_proposals(stage1.proposals, base_times)
            self.proposals_static = False  # their planes no longer depend on time
        else:
            self.proposals = stage1.proposals
            for p in self.proposals.parameters():
                p.requires_grad_(False)
            self.proposals_static = True
        self.frames = int(frames)
        self.sky = None
        if getattr(stage1, "sky", None) is not None:  # frozen, like the static planes
            self.sky = nn.Parameter(stage1.sky.detach().clone(), requires_grad=False)

    def render_phases(self, origins, dirs, t_edges, hit, phases, *, background=None) -> dict:
        """Render R rays in the bins `t_edges` [R, S + 1] at every loop phase of `phases` [F]:
        rgb [F, R, 3], depth [F, R], acc [F, R], weights [F, R, S]. The same as
        `render_samples` on the rays repeated per phase, with the phase-independent work
        (points, the space planes, the colour basis of each direction) done once."""
        f_, r = phases.shape[0], origins.shape[0]
        x = self._points(origins, dirs, t_edges)
        decoder = self.field.base.decoder
        grid = self.field.base.grid
        region = self.dynamic_region
        linear = getattr(decoder, "kind", None) == "linear"
        if linear and grid.backend == "taichi":
            # fused: features -> the linear decoder's logits in one kernel, features never stored
            from loopnerf.fields.activations import trunc_exp
            from loopnerf.kernels.loop_features import loop_features_decoded

            pts = x.reshape(-1, 3)
            loops = self.field.loop_planes_by_scale()
            w = decoder.sigma.weight.detach()
            with torch.no_grad():  # the space planes and the decoder are frozen
                static = grid.static_features(pts)
                basis = decoder.direction_basis(dirs)  # [R, 3, C], once per ray
            if region.everywhere:
                sigma, logits = loop_features_decoded(pts, phases, static, loops, w, basis, x.shape[1])
            else:  # the loop kernel inside the dynamic region; outside, stage 1's static part
                inside = region.contains(pts)
                d_idx, s_idx = inside.nonzero().squeeze(1), (~inside).nonzero().squeeze(1)
                ray_of = torch.arange(pts.shape[0], device=pts.device) // x.shape[1]
                sd, ld = loop_features_decoded(pts[d_idx], phases, static[d_idx], loops, w, basis, ray_of[d_idx])
                # the static part's logits for every point, ray by ray (one batched matrix
                # product), then the outside points picked: gathering each point's colour
                # basis [K, 3, S * C] first cost 3-4 ms of a 80 ms step
                with torch.no_grad():
                    ss = (static @ w.reshape(-1))[s_idx]
                    ls = torch.bmm(static.view(r, x.shape[1], -1), basis.transpose(1, 2)).reshape(-1, 3)[s_idx]
                sigma = sd.new_empty(f_, pts.shape[0]).index_copy(1, d_idx, sd).index_copy(1, s_idx, ss[None].expand(f_, -1))
                logits = ld.new_empty(f_, pts.shape[0], 3).index_copy(1, d_idx, ld).index_copy(1, s_idx, ls[None].expand(f_, -1, -1))
            density = trunc_exp(sigma + decoder.sigma.bias.detach() - 1.0)
            rgb = torch.sigmoid(logits)
        elif linear:
            feats = self.field.features_at_phases(x, phases, region)  # [F, R, S, C]
            density = decoder.density(feats)
            basis = decoder.direction_basis(dirs)  # [R, 3, C], once per ray
            rgb = torch.sigmoid(torch.einsum("frsk,rck->frsc", feats, basis))
        else:
            feats = self.field.features_at_phases(x, phases, region)
            density, rgb = decoder(feats.reshape(f_ * r, *feats.shape[2:]), dirs.repeat(f_, 1))
        out = self.composite(density.reshape(f_ * r, -1), rgb.reshape(f_ * r, -1, 3), t_edges.repeat(f_, 1), hit.repeat(f_), background, dirs.repeat(f_, 1))
        return {k: v.view(f_, r, *v.shape[1:]) for k, v in out.items()}

    def loop_parameters(self) -> list[nn.Parameter]:
        return list(self.field.loop_planes)

    def parameter_count(self) -> dict:
        loop = sum(p.numel() for p in self.field.loop_planes)
        frozen = sum(p.numel() for n, p in self.named_parameters() if not n.startswith("field.loop_planes"))
        return {"time_dependent": int(loop), "frozen": int(frozen), "total": int(loop + frozen)}

    def loop_regularizers(self, w) -> dict:
        """The stage-1 plane regularizers on the loop planes, time smoothness circular."""
        planes = list(self.field.loop_planes)
        out = {}
        if w.plane_tv:
            out["plane_tv"] = w.plane_tv * torch.stack([(p[:, 1:] - p[:, :-1]).square().mean() * 2.0 for p in planes]).mean()
        if w.time_smoothness:
            # the time axis is a circle: the second difference wraps around the seam too
            terms = [(torch.roll(p, -1, 0) - 2 * p + torch.roll(p, 1, 0)).square().mean() for p in planes]
            out["time_smoothness"] = w.time_smoothness * torch.stack(terms).mean()
        if w.l1_time:
            # towards the anchor (stage 1's time average, or ones): the static scene
            anchors = self.field.anchors()
            out["l1_time"] = w.l1_time * torch.stack([(a[None] - p).abs().mean() for a, p in zip(anchors, planes)]).mean()
        return out


def add_loop_regularizer_grads(model: "LoopModel", w) -> dict:
    """The value of `model.loop_regularizers(w)` (one term, "plane_regularizers"), its
    gradient added straight into the loop planes' `.grad` by the fused Taichi pass; call
    it after `backward()` of the other terms. Frozen planes (no grad wanted) are skipped."""
    from loopnerf.kernels.plane_regularizers import regularizer_grads_of_planes

    planes = list(model.field.loop_planes)
    n = len(planes)
    pairs = [(p, a) for p, a in zip(planes, model.field.anchors()) if p.requires_grad]
    for plane, _ in pairs:
        if plane.grad is None:
            plane.grad = torch.zeros_like(plane)
    total = regularizer_grads_of_planes(
        [p for p, _ in pairs], [p.grad for p, _ in pairs], tv_w=2.0 * w.plane_tv / n, smooth=w.time_smoothness / n,
        l1=w.l1_time / n, circular=True, anchors=[a for _, a in pairs],
    ).double()
    return {"plane_regularizers": total.float()}


def init_from_stage1_time(stage1: KPlanesModel, times: np.ndarray) -> list[torch.Tensor]:
    """Loop planes sampled from the stage-1 time planes at `times` (capture times in [0, 1],
    one per loop frame): the naive baseline's start, t' = t mod F."""
    grid = stage1.field.grid
    out = []
    tt = torch.as_tensor(times, dtype=torch.float32) * 2 - 1  # grid time coordinate
    for s in range(len(grid.multiscale)):
        for k in (2, 4, 5):
            plane = grid.planes[s * 6 + k].detach()  # [Rt, R_i, C]
            rt = plane.shape[0]
            pos = (tt + 1) / 2 * (rt - 1)
            i0 = pos.floor().clamp(0, rt - 1).long()
            i1 = (i0 + 1).clamp_max(rt - 1)
            f = (pos - i0.float()).clamp(0, 1)[:, None, None]
            out.append(plane[i0] * (1 - f) + plane[i1] * f)
    return out


LOOP_RENDER_CHUNK = 16384
"""Ray-phase renders per pass of `render_loop_frames` (F phases of chunk / F rays): a
96 x 96 camera's 24 loop frames take 0.38 s at 16384, 0.61-0.69 s at 4096 (fewer kernel
launches; measured side by side on the demo loop, the same images to 6e-8)."""


@torch.no_grad()
def render_loop_frames(model: LoopModel, c2w, intrinsics, frames: int | None = None, *, depth: bool = False, chunk: int = LOOP_RENDER_CHUNK):
    """All F loop frames at one camera: rgb [F, H, W, 3] float32 (and depth [F, H, W]).

    Samples each ray once (the proposal fields see static geometry only, so the samples
    do not depend on the phase) and evaluates the loop field at the F phases k / F.
    """
    from loopnerf.data.rays import camera_rays

    f = int(frames or model.frames)
    w, h = int(intrinsics.width), int(intrinsics.height)
    origins, dirs = (r.reshape(-1, 3) for r in camera_rays(np.asarray(c2w), intrinsics))
    was_training = model.training
    model.eval()
    rgb = torch.empty(f, h * w, 3)
    dep = torch.empty(f, h * w)
    rays = max(64, chunk // f)  # rays per pass: F phases each, about `chunk` renders at once
    phases = torch.arange(f, dtype=torch.float32) / f
    for i in range(0, origins.shape[0], rays):
        o, d = origins[i : i + rays], dirs[i : i + rays]
        smp = model.sample_along_rays(o, d, torch.zeros(o.shape[0]))
        out = model.render_phases(o, d, smp["t_edges"], smp["hit"], phases)
        rgb[:, i : i + rays] = out["rgb"]
        dep[:, i : i + rays] = out["depth"]
    model.train(was_training)
    rgb = rgb.clamp(0, 1).view(f, h, w, 3).numpy()
    return (rgb, dep.view(f, h, w).numpy()) if depth else rgb
