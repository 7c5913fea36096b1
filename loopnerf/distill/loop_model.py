"""The loop model: the stage-1 field with its space-time planes replaced by looping ones.

Frozen: the three space planes of every scale, the decoder (density head and colour
basis / MLP), and the proposal fields (evaluated with their time planes as ones, so
samples follow the static geometry). Trainable: per scale, three loop planes
(xt, yt, zt) of shape `[F, R_i, C]` (channel-last; H = the F loop samples), initialised
to ones (training starts from the static scene), sampled with a periodic time axis.

A loop model renders with `phase` in [0, 1) where stage 1 took capture time: loop
frame k is phase k / F and reads loop sample k exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loopnerf.errors import ConfigError
from loopnerf.fields.kplanes import SPACE_PAIRS, interpolate_features
from loopnerf.fields.field import KPlanesField
from loopnerf.model.kplanes_model import KPlanesModel

LOOP_PAIRS = ("xt", "yt", "zt")


class LoopField(nn.Module):
    """`forward(x [R, S, 3], phase [R], dirs [R, 3], static=False) -> (density, rgb)`."""

    def __init__(self, base: KPlanesField, frames: int, init: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.frames = int(frames)
        grid = base.grid
        self.loop_planes = nn.ParameterList()
        for s, m in enumerate(grid.multiscale):
            for axis in range(3):
                r = grid.base_resolution[axis] * m
                if init is not None:
                    p = init[s * 3 + axis].detach().clone()
                else:
                    p = torch.ones(self.frames, r, grid.features)
                self.loop_planes.append(nn.Parameter(p))

    @property
    def n_scales(self) -> int:
        return len(self.base.grid.multiscale)

    def planes_by_scale(self) -> list[list[torch.Tensor]]:
        """Per scale the 6 planes in hex-plane order (xy, xz, xt, yz, yt, zt): frozen space
        planes with the loop planes in the time slots."""
        grid = self.base.grid
        out = []
        for s in range(self.n_scales):
            sp = [grid.planes[s * 6 + k] for k in SPACE_PAIRS]
            lp = [self.loop_planes[s * 3 + a] for a in range(3)]
            out.append([sp[0], sp[1], lp[0], sp[2], lp[1], lp[2]])
        return out

    def features(self, x: torch.Tensor, phase: torch.Tensor, static: bool = False) -> torch.Tensor:
        if static:
            return self.base.features(x, phase, static=True)
        r, s, _ = x.shape
        t = (phase * 2.0 - 1.0).to(x.dtype)[:, None, None].expand(r, s, 1)
        x4 = torch.cat([x, t], dim=-1).reshape(r * s, 4)
        f = interpolate_features(x4, self.planes_by_scale(), wrap_time=True, backend=self.base.grid.backend)
        return f.view(r, s, -1)

    def density(self, x, phase, static: bool = False):
        return self.base.decoder.density(self.features(x, phase, static))

    def forward(self, x, phase, dirs, static: bool = False):
        return self.base.decoder(self.features(x, phase, static), dirs)

    def space_time_planes(self) -> list[torch.Tensor]:
        return list(self.loop_planes)


class LoopModel(KPlanesModel):
    """A `KPlanesModel` whose field is a `LoopField`; `forward(origins, dirs, phases)`."""

    def __init__(self, stage1: KPlanesModel, frames: int, init: list[torch.Tensor] | None = None) -> None:
        nn.Module.__init__(self)
        self.cfg = stage1.cfg
        self.register_buffer("box_min", stage1.box_min.clone())
        self.register_buffer("box_max", stage1.box_max.clone())
        self.field = LoopField(stage1.field, frames, init)
        self.proposals = stage1.proposals
        for p in self.proposals.parameters():
            p.requires_grad_(False)
        self.proposals_static = True
        self.frames = int(frames)

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
            out["l1_time"] = w.l1_time * torch.stack([(1.0 - p).abs().mean() for p in planes]).mean()
        return out


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


def save_loop_model(run: Path, model: LoopModel, config: dict, name: str = "loop") -> Path:
    """Write RUN/<name>/model.safetensors (loop planes only) and config.json."""
    from loopnerf.model.checkpoint import save_checkpoint
    from loopnerf.model.config import save_json_atomic

    d = Path(run) / name
    d.mkdir(parents=True, exist_ok=True)
    save_json_atomic(d / "config.json", {"frames": model.frames, **config})
    holder = nn.Module()
    holder.loop_planes = model.field.loop_planes
    save_checkpoint(d / "model.safetensors", holder, None, None, {"frames": model.frames})
    return d / "model.safetensors"


def load_loop_model(run: Path, name: str = "loop"):
    """(LoopModel, loop config dict) from RUN/<name>/ on top of RUN's stage-1 weights."""
    from loopnerf.model.checkpoint import finished_or_latest, load_checkpoint
    from loopnerf.model.train import load_stage1

    d = Path(run) / name
    if not (d / "config.json").is_file():
        raise ConfigError(f"{run}: no loop there (missing {name}/config.json); run `loopnerf distill` first")
    info = json.loads((d / "config.json").read_text())
    stage1, _ = load_stage1(run)
    model = LoopModel(stage1, int(info["frames"]))
    holder = nn.Module()
    holder.loop_planes = model.field.loop_planes
    ck = finished_or_latest(d)
    load_checkpoint(ck, holder)
    model.eval()
    return model, info


@torch.no_grad()
def render_loop_frames(model: LoopModel, c2w, intrinsics, frames: int | None = None, *, depth: bool = False, chunk: int = 4096):
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
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i : i + chunk], dirs[i : i + chunk]
        smp = model.sample_along_rays(o, d, torch.zeros(o.shape[0]))
        for j in range(f):
            out = model.render_samples(o, d, torch.full((o.shape[0],), j / f), smp["t_edges"], smp["hit"])
            rgb[j, i : i + chunk] = out["rgb"]
            dep[j, i : i + chunk] = out["depth"]
    model.train(was_training)
    rgb = rgb.clamp(0, 1).view(f, h, w, 3).numpy()
    return (rgb, dep.view(f, h, w).numpy()) if depth else rgb
