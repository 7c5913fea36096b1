"""Stage-1 model: box normalisation, proposal sampling, the k-Planes field, rendering.

`KPlanesModel.forward(origins, dirs, times)` renders rays given in world units:
origins [R, 3], unit directions [R, 3], times [R] in [0, 1]. Depth is the expected
distance along the ray in world units.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from loopnerf.fields.dynamic_region import DynamicRegion
from loopnerf.fields.field import KPlanesField, ProposalField, contract
from loopnerf.choices import KernelBackend, check_choice, check_choices
from loopnerf.model import losses as L
from loopnerf.model.config import ModelConfig
from loopnerf.model.sampling import intersect_box, sample_pdf, uniform_edges, weights_from_density


VIEW_CONSISTENCY_SHARE = 4
"""`view_consistency` looks at one ray in this many of a batch (its cost, 15-25 ms of a
~100 ms `cpu` step on all rays, falls with it; the loss is a mean, so its scale does not)."""


def _volume_render(backend: str):
    check_choice(backend, KernelBackend, "kernel_backend")
    if backend == "taichi":
        from loopnerf.kernels import volume_render
    else:
        from loopnerf.kernels.reference import volume_render
    return volume_render


def anneal_exponent(step: int | None, anneal_steps: int, slope: float = 10.0) -> float:
    """mip-NeRF 360 proposal-weight annealing: bias(step / N, slope), 1 at evaluation."""
    if step is None or anneal_steps <= 0:
        return 1.0
    x = min(max(step / anneal_steps, 0.0), 1.0)
    return slope * x / ((slope - 1.0) * x + 1.0)


class KPlanesModel(nn.Module):
    """The stage-1 dynamic radiance field with its proposal samplers."""

    proposals_static = False
    """True: proposal fields ignore their time planes (the loop model samples static geometry)."""

    def __init__(self, cfg: ModelConfig, box: np.ndarray, *, seed: int = 0) -> None:
        super().__init__()
        check_choices(cfg, "model.")  # a config edited after construction is checked here
        self.cfg = cfg
        box = np.asarray(box, dtype=np.float64)
        self.register_buffer("box_min", torch.tensor(box[0], dtype=torch.float32))
        self.register_buffer("box_max", torch.tensor(box[1], dtype=torch.float32))
        g = torch.Generator().manual_seed(seed)
        self.field = KPlanesField(cfg.field, backend=cfg.kernel_backend, generator=g)
        self.proposals = nn.ModuleList(ProposalField(p, backend=cfg.kernel_backend, generator=g) for p in cfg.proposals)
        self.dynamic_region = DynamicRegion(cfg.dynamic_region_resolution)
        """Where the time planes act (all ones = everywhere; the trainer estimates it, see
        `ModelConfig.dynamic_region`); saved with the weights."""
        if cfg.contraction == "auto":
            from loopnerf.errors import ConfigError

            raise ConfigError("model.contraction 'auto' is decided from a capture by the trainer "
                              "(loopnerf.model.contraction_choice); a model needs 'none' or 'mipnerf360'")
        if len(cfg.proposals) != len(cfg.proposal_samples):
            raise ValueError("one proposal sample count per proposal field")
        self.sky = None
        """Unbounded fields: logits [Hs, Ws, 3] of the background at infinity (see
        `ModelConfig.sky_resolution`), starting at the constant background; else None."""
        hs, ws = (int(v) for v in cfg.sky_resolution)
        if cfg.contraction == "mipnerf360" and hs >= 2 and ws >= 1:
            bg = torch.tensor(cfg.background, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
            self.sky = nn.Parameter(torch.logit(bg).expand(hs, ws, 3).clone())

    # ------------------------------------------------------------- geometry
    @property
    def box(self) -> np.ndarray:
        return np.stack([self.box_min.cpu().numpy(), self.box_max.cpu().numpy()]).astype(np.float64)

    def to_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> normalised cube coordinates (box -> [-1, 1]^3)."""
        centre = (self.box_min + self.box_max) * 0.5
        half = (self.box_max - self.box_min) * 0.5
        return (x - centre) / half

    def field_coords(self, x_world: torch.Tensor) -> torch.Tensor:
        x = self.to_normalised(x_world)
        if self.cfg.contraction == "mipnerf360":
            x = contract(x)
        return x

    def ray_range(self, origins: torch.Tensor, dirs: torch.Tensor):
        """Per-ray [t_near, t_far] in world units."""
        if self.cfg.contraction == "none":
            half = (self.box_max - self.box_min) * 0.5
            return intersect_box(self.to_normalised(origins), dirs / half, self.cfg.near, 1e10)
        n = torch.full_like(origins[:, 0], self.cfg.near)
        return n, torch.full_like(n, self.cfg.far)

    def ray_split(self, origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor | None:
        """Unbounded scenes: per ray [R] the distance where `s_to_t` turns from linear to
        disparity spacing, where the ray leaves the box (rays that miss it: where they pass
        closest to its centre), at least 2 near and at most far / 2. None when bounded."""
        if self.cfg.contraction == "none":
            return None
        half = (self.box_max - self.box_min) * 0.5
        o = self.to_normalised(origins)
        d = dirs / half
        t_in, t_out = intersect_box(o, d, self.cfg.near, 1e10)
        closest = (-(o * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-12))
        split = torch.where(t_out > t_in, t_out, closest)
        return split.clamp(2.0 * self.cfg.near, 0.5 * self.cfg.far)

    def s_to_t(self, s: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor, t_split: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised ray coordinate s in [0, 1] -> distance t. Bounded: linear over
        [t_near, t_far]. Unbounded (`t_split` from `ray_split`): linear from t_near to
        t_split over s in [0, 1/2], linear in disparity from t_split to t_far over
        [1/2, 1] (nerfstudio's piecewise sampler; disparity from near alone puts 95 % of
        the initial samples within a box's width of the camera)."""
        if self.cfg.contraction == "none":
            return t_near[:, None] + s * (t_far - t_near)[:, None]
        if t_split is None:
            raise ValueError("an unbounded model's s_to_t needs t_split (KPlanesModel.ray_split)")
        n, m, f = t_near[:, None], t_split[:, None], t_far[:, None]
        lin = n + (2.0 * s) * (m - n)
        u = (2.0 * s - 1.0).clamp(0.0, 1.0)
        disp = 1.0 / (1.0 / m + u * (1.0 / f - 1.0 / m))
        return torch.where(s <= 0.5, lin, disp)

    # -------------------------------------------------------------- render
    def forward(
        self,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        times: torch.Tensor,
        *,
        step: int | None = None,
        anneal_steps: int = 1000,
        training: bool = False,
        static: bool = False,
        background: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict:
        """Render R rays. Returns rgb [R, 3], depth [R], acc [R], and for training the
        sample histograms needed by the interlevel and distortion losses."""
        samples = self.sample_along_rays(origins, dirs, times, step=step, anneal_steps=anneal_steps, training=training, static=static, generator=generator)
        out = self.render_samples(origins, dirs, times, samples["t_edges"], samples["hit"], static=static, background=background)
        if training:
            out.update(s_edges=samples["s_edges"], prop_edges=samples["prop_edges"], prop_weights=samples["prop_weights"])
        return out

    def sample_along_rays(self, origins, dirs, times, *, step=None, anneal_steps: int = 1000, training: bool = False, static: bool = False, generator=None) -> dict:
        """Proposal sampling: the main field's bin edges `t_edges` [R, S + 1] (world units)
        and `s_edges` (normalised), the proposal histograms, and `hit` [R] (ray meets the box)."""
        cfg = self.cfg
        t_near, t_far = self.ray_range(origins, dirs)
        t_split = self.ray_split(origins, dirs)
        hit = t_far > t_near
        s_edges = uniform_edges(torch.zeros_like(t_near), torch.ones_like(t_near), cfg.proposal_samples[0], training, generator)
        prop_edges, prop_weights = [], []
        exponent = anneal_exponent(step if training else None, anneal_steps)
        for level, prop in enumerate(self.proposals):
            if level > 0:
                s_edges = sample_pdf(s_edges, prop_weights[-1] ** exponent, cfg.proposal_samples[level], training, generator=generator)
            t_edges = self.s_to_t(s_edges, t_near, t_far, t_split)
            density = prop(self._points(origins, dirs, t_edges), times, static=static or self.proposals_static, region=self.dynamic_region)
            prop_edges.append(s_edges)
            prop_weights.append(weights_from_density(density, t_edges))
        s_edges = sample_pdf(s_edges, prop_weights[-1] ** exponent, cfg.samples, training, generator=generator)
        return {"t_edges": self.s_to_t(s_edges, t_near, t_far, t_split), "s_edges": s_edges, "hit": hit, "prop_edges": prop_edges, "prop_weights": prop_weights}

    def rays_meeting_region(self, origins, dirs, samples: dict) -> torch.Tensor:
        """bool [R]: rays of which some point evaluated by `sample_along_rays` (any proposal
        level) or by the main field in its bins (`samples`, what it returned) lies in the
        dynamic region. The others render the same at every time (at evaluation, where the
        sampler is deterministic): nothing they evaluate depends on time."""
        if self.dynamic_region.everywhere:
            return torch.ones(origins.shape[0], dtype=torch.bool, device=origins.device)
        t_near, t_far = self.ray_range(origins, dirs)
        t_split = self.ray_split(origins, dirs)
        edges = [samples["t_edges"]] + [self.s_to_t(s, t_near, t_far, t_split) for s in samples["prop_edges"]]
        meets = torch.zeros(origins.shape[0], dtype=torch.bool, device=origins.device)
        for e in edges:
            x = self._points(origins, dirs, e)
            meets |= self.dynamic_region.contains(x.reshape(-1, 3)).view(origins.shape[0], -1).any(dim=1)
        return meets

    def render_samples(self, origins, dirs, times, t_edges, hit, *, static: bool = False, background=None) -> dict:
        """Evaluate the field in the bins `t_edges` [R, S + 1] and composite: rgb [R, 3],
        depth [R] (world units), acc [R], weights [R, S]."""
        x = self._points(origins, dirs, t_edges)
        features = self.field.features(x, times, static=static, region=self.dynamic_region)
        density, rgb = self.field.decoder(features, dirs)
        out = self.composite(density, rgb, t_edges, hit, background, dirs)
        if features.requires_grad:  # training: what `view_consistency` needs
            out.update(features=features, sample_rgb=rgb)
        return out

    def sky_colour(self, dirs: torch.Tensor) -> torch.Tensor:
        """RGB [R, 3] of the background at infinity along unit dirs [R, 3] (bilinear in the
        lat-long map, `loopnerf.fields.lat_long`)."""
        from loopnerf.fields.lat_long import lookup_direction_table

        return torch.sigmoid(lookup_direction_table(self.sky[..., None], dirs)[..., 0])

    def composite(self, density, rgb, t_edges, hit, background=None, dirs=None) -> dict:
        """Volume-render densities [R, S] and colours [R, S, 3] in the bins `t_edges`
        [R, S + 1] over the background (given, else the sky along `dirs` [R, 3] when the
        model has one, else the config's colour): rgb [R, 3], depth [R], acc [R], weights [R, S]."""
        cfg = self.cfg
        deltas = (t_edges[:, 1:] - t_edges[:, :-1]).contiguous()
        density = density * hit[:, None].to(density.dtype)
        color, weights = _volume_render(cfg.kernel_backend)(density.contiguous(), rgb.contiguous(), deltas)
        acc = weights.sum(-1)
        mid = 0.5 * (t_edges[:, 1:] + t_edges[:, :-1])
        depth = (weights * mid).sum(-1) / acc.clamp_min(1e-6)
        if background is None and self.sky is not None and dirs is not None:
            background = self.sky_colour(dirs).to(color.dtype)
        if background is None:
            background = torch.tensor(cfg.background, dtype=color.dtype, device=color.device)
        color = color + (1.0 - acc[:, None]) * background
        return {"rgb": color, "depth": depth, "acc": acc, "weights": weights}

    def _points(self, origins, dirs, t_edges) -> torch.Tensor:
        mid = 0.5 * (t_edges[:, 1:] + t_edges[:, :-1])
        return self.field_coords(origins[:, None, :] + dirs[:, None, :] * mid[..., None])

    # ------------------------------------------------------------- losses
    def regularizers(self, w) -> dict:
        """Plane regularizers of the field and the proposal fields, weighted by `w` (LossWeights)."""
        g = self.field.grid
        out = {}
        if w.plane_tv:
            out["plane_tv"] = w.plane_tv * L.grid_tv(g.space_planes(), g.space_time_planes())
        if g.dim == 4 and w.time_smoothness:
            out["time_smoothness"] = w.time_smoothness * L.time_smoothness(g.space_time_planes())
        if g.dim == 4 and w.l1_time:
            out["l1_time"] = w.l1_time * L.l1_time_planes(g.space_time_planes())
        props = [p.grid for p in self.proposals]
        if props and w.plane_tv_proposal:
            out["plane_tv_proposal"] = w.plane_tv_proposal * sum(L.grid_tv(p.space_planes(), p.space_time_planes()) for p in props)
        if props and props[0].dim == 4:
            if w.time_smoothness_proposal:
                out["time_smoothness_proposal"] = w.time_smoothness_proposal * sum(L.time_smoothness(p.space_time_planes()) for p in props)
            if w.l1_time_proposal:
                out["l1_time_proposal"] = w.l1_time_proposal * sum(L.l1_time_planes(p.space_time_planes()) for p in props)
        return out

    def add_regularizer_grads(self, w) -> dict:
        """The value of `regularizers(w)` (as one term, "plane_regularizers"), its gradient
        added straight into the planes' `.grad` by the fused Taichi pass (no autograd
        graph, no plane-sized temporaries); call it after `backward()` of the other terms."""
        g = self.field.grid
        total = self._grid_regularizer_grads(g, w.plane_tv, w.time_smoothness, w.l1_time)
        for p in self.proposals:
            total = total + self._grid_regularizer_grads(p.grid, w.plane_tv_proposal, w.time_smoothness_proposal, w.l1_time_proposal)
        return {"plane_regularizers": total}

    @staticmethod
    def _grid_regularizer_grads(grid, tv: float, smooth: float, l1: float) -> torch.Tensor:
        """One grid's `grid_tv`, `time_smoothness` and `l1_time_planes` (weighted), fused."""
        from loopnerf.kernels.plane_regularizers import regularizer_grads_of_planes

        space, space_time = grid.space_planes(), grid.space_time_planes() if grid.dim == 4 else []
        n, n_t = len(space) + len(space_time), max(len(space_time), 1)
        for plane in space + space_time:
            if plane.grad is None:
                plane.grad = torch.zeros_like(plane)
        tv_coef = 2.0 * tv / n  # plane_tv is 2 (mean dH^2 + mean dW^2); grid_tv its mean over planes
        # (the planes of a kind come scale by scale: three of a scale per launch)
        total = regularizer_grads_of_planes(space, [q.grad for q in space], tv_w=tv_coef, tv_h=tv_coef).double()
        if space_time:
            total = total + regularizer_grads_of_planes(
                space_time, [q.grad for q in space_time], tv_w=tv_coef, smooth=smooth / n_t, l1=l1 / n_t,
            ).double()
        return total.float()

    def view_consistency(self, out: dict, w, generator: torch.Generator | None = None) -> dict:
        """`losses.view_consistency` of a training render `out` (it keeps the samples'
        features and colours): every ray's samples decoded again at one random direction."""
        if not w.view_consistency or "features" not in out:
            return {}
        # every k-th ray: a batch's head is its ray-focus share (`RayBatcher.sample`)
        pick = slice(None, None, VIEW_CONSISTENCY_SHARE)
        features = out["features"][pick]
        other = L.random_directions(features.shape[0], generator=generator, dtype=features.dtype, device=features.device)
        _, rgb_other = self.field.decoder(features, other)
        return {"view_consistency": w.view_consistency * L.view_consistency_loss(out["sample_rgb"][pick], rgb_other, out["weights"][pick])}

    def sampling_losses(self, out: dict, w) -> dict:
        res = {}
        if w.interlevel and self.proposals:
            res["interlevel"] = w.interlevel * L.interlevel_loss(out["s_edges"], out["weights"], out["prop_edges"], out["prop_weights"])
        if w.distortion:
            res["distortion"] = w.distortion * L.distortion_loss(out["s_edges"], out["weights"])
        return res

    def parameter_count(self) -> dict:
        g = self.field.grid
        time_params = sum(p.numel() for p in g.space_time_planes())
        total = sum(p.numel() for p in self.parameters())
        return {"total": int(total), "time_dependent": int(time_params), "field": int(sum(p.numel() for p in self.field.parameters()))}
