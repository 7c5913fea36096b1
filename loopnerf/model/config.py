"""Stage-1 configuration: model, losses, training schedule, and the named presets.

Presets:
- `tiny`: seconds, for tests (small grids, few samples, 300 steps: at 150 a tiny fit has
  not yet learnt the motion where the dynamic region lets it, 16 dB held-out vs 19.8 dB).
- `cpu`: the default; a good fit on a 2-core CPU in about 10 minutes (sizes chosen by
  measurement, see README "Presets").
- `paper`: the report's / nerfstudio kplanes-dynamic settings, for a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from loopnerf.choices import Contraction, DynamicRegionMode, KernelBackend, Preset, check_choice, check_choices
from loopnerf.errors import ConfigError
from loopnerf.fields.field import FieldConfig, ProposalConfig


@dataclass
class LossWeights:
    """Loss weights (nerfstudio kplanes-dynamic defaults)."""

    interlevel: float = 1.0
    distortion: float = 0.01
    plane_tv: float = 0.1
    plane_tv_proposal: float = 1e-4
    l1_time: float = 1e-3
    l1_time_proposal: float = 1e-4
    time_smoothness: float = 0.1
    time_smoothness_proposal: float = 1e-3
    view_consistency: float = 0.03
    """Weight of `losses.view_consistency`: each sample's colour at the ray's direction
    against its colour at a random direction, weighted by the sample's (detached) weight.
    A Lambertian surface looks the same from everywhere; the field's direction basis
    otherwise invents colours where no camera looked (0 turns it off)."""


@dataclass
class ModelConfig:
    field: FieldConfig = field(default_factory=FieldConfig)
    proposals: tuple[ProposalConfig, ...] = (
        ProposalConfig((64, 64, 64, 0), 8),
        ProposalConfig((128, 128, 128, 0), 8),
    )
    proposal_samples: tuple[int, ...] = (48, 24)
    """Samples per ray drawn at each proposal level. 48 + 24 (was 64 + 32): on the demo
    capture held-out PSNR 31.04 dB (64 + 32: 31.01), a training step 6 % and a render
    17 % faster (103 vs 110 ms, 193 vs 233 ms at 96 px, measured side by side)."""
    samples: int = 24
    """Samples per ray of the main field."""
    contraction: Contraction = "auto"
    """'none' (bounded scene: rays sampled inside the box), 'mipnerf360' (unbounded: the
    planes span the contracted space, the box their middle half), or 'auto' (the
    trainer picks one from the capture and logs why: unbounded when the training rays
    that miss the box see more than a flat background, `model.contraction_choice`)."""
    near: float = 0.05
    """Nearest sample distance from the camera, world units."""
    far: float = 100.0
    """Farthest sample distance (used with contraction), world units."""
    sky_resolution: tuple[int, int] = (32, 64)
    """Unbounded fields: (rows, columns) of the background at infinity, a learnt colour per
    ray direction (lat-long, as the baked direction table) composited behind the field
    instead of `background`, so far content (sky, hills) need not be painted as density
    near the cameras. (0, 0): the constant `background` colour."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the scene (RGB in [0, 1])."""
    kernel_backend: KernelBackend = "taichi"
    """'taichi' (fast kernels) or 'torch' (the plain reference twins)."""
    dynamic_region: DynamicRegionMode = "auto"
    """Where the time planes act. 'auto': only in the region where the capture's still
    stretches show motion (`loopnerf.model.motion_mask`; everywhere when the camera never
    rests), the static part (time planes as ones) elsewhere, so the static scene has to
    agree with every view; 'everywhere': plain k-Planes."""
    dynamic_region_resolution: int = 64
    """Voxels per axis of the dynamic-region grid over the box."""


@dataclass
class TrainConfig:
    steps: int = 2500
    rays: int = 1024
    """Rays per step."""
    lr: float = 1e-2
    warmup_steps: int = 200
    proposal_anneal_steps: int = 1000
    """Steps over which the proposal weights' exponent anneals from 0 to 1 (mip-NeRF 360)."""
    dynamic_ray_fraction: float = 0.3
    """Share of every batch drawn among the pixels whose ray crosses the dynamic region
    (`loopnerf.model.ray_focus`); the rest is drawn among all pixels. 0: uniform. Has no
    effect when the region is everywhere. Demo capture (those pixels are 25 % of the
    training pixels), `cpu` preset, at the four still cameras against the true states,
    0 / 0.3 / 0.5: motion ratio 0.67-0.76 / 0.76-0.82 / 0.78-0.84, moving-pixel PSNR
    25.8-27.2 / 27.6-28.8 / 28.2-29.3 dB, static PSNR 35.1-36.2 / 34.4-35.7 /
    32.7-34.3 dB; held-out PSNR 31.96 / 32.10 / 31.25 dB. Session 15, same capture, 0.3 /
    0.4: motion ratio 0.77-0.80 / 0.80-0.82, moving-pixel PSNR 27.6-28.9 / 28.1-29.3 dB,
    static PSNR 34.2-35.8 / 33.8-35.3 dB, held-out 31.92 / 31.91 dB; the loop from it at the
    supervised camera 26.38 / 26.72 dB, motion 0.82 / 0.82 (one fit each: not a default yet)."""
    moving_focus_weight: int = 4
    """At the frames of a still stretch, the dynamic share of the batch draws a region
    pixel seen moving there (`MotionMask.still_pixels`) this many times as often as one
    that is not (1: alike, as at the other frames; `ray_focus.focus_indices`). Demo
    capture, `cpu` preset, one fit each, at the four still cameras against the true
    states, 1 / 4 / 8 / moving pixels only: motion ratio 0.77-0.81 / 0.81-0.85 /
    0.82-0.85 / 0.82-0.84, moving-pixel PSNR 27.6-28.9 / 29.0-30.2 / 29.3-30.5 /
    28.7-29.8 dB, static PSNR 34.2-35.8 / 34.3-35.8 / 34.3-35.5 / 34.5-35.3 dB, held-out
    31.92 / 32.05 / 31.98 / 32.17 dB."""
    eval_every: int = 1000
    checkpoint_every: int = 500
    eval_frames: int = 4
    """Held-out frames rendered at each periodic evaluation (all of them at the end)."""
    seed: int = 0
    losses: LossWeights = field(default_factory=LossWeights)


@dataclass
class Stage1Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: Preset = "cpu"

    def __post_init__(self) -> None:
        check_choices(self)


def _tiny() -> Stage1Config:
    return Stage1Config(
        model=ModelConfig(
            field=FieldConfig(resolution=(16, 16, 16, 0), multiscale=(1, 2), features=8),
            proposals=(ProposalConfig((16, 16, 16, 0), 4),),
            proposal_samples=(32,),
            samples=16,
        ),
        train=TrainConfig(steps=300, rays=512, warmup_steps=20, proposal_anneal_steps=50, eval_every=0, checkpoint_every=100, eval_frames=2),
        preset="tiny",
    )


def _paper() -> Stage1Config:
    return Stage1Config(
        model=ModelConfig(
            field=FieldConfig(resolution=(128, 128, 128, 1536), multiscale=(1, 2, 4), features=32),
            proposals=(ProposalConfig((128, 128, 128, 150), 8), ProposalConfig((256, 256, 256, 150), 8)),
            proposal_samples=(256, 128),
            samples=48,
        ),
        train=TrainConfig(steps=30000, rays=4096, warmup_steps=512, proposal_anneal_steps=1000, eval_every=5000, checkpoint_every=2000),
        preset="paper",
    )


STAGE1_PRESETS: dict[str, Callable[[], Stage1Config]] = {"tiny": _tiny, "cpu": lambda: Stage1Config(preset="cpu"), "paper": _paper}
"""Stage 1's preset table: name -> a fresh config (see the module docstring)."""


def preset(name: Preset) -> Stage1Config:
    """A fresh copy of the named stage-1 preset."""
    check_choice(name, Preset, "preset")
    return STAGE1_PRESETS[name]()


AUTO_TIME = 0
"""A time resolution of 0 in a preset means: chosen from the capture
(`loopnerf.model.time_samples`: one sample per frame when the camera rests, else one per
few viewpoints)."""


MAX_TIME_SAMPLES = 2048


def clamp_time_samples(n: int) -> int:
    """A time resolution the planes can have: between 2 and MAX_TIME_SAMPLES."""
    return int(min(max(n, 2), MAX_TIME_SAMPLES))


def resolve_time_resolution(cfg: "Stage1Config", n_samples: int) -> "Stage1Config":
    """Replace automatic (0) time resolutions by `n_samples` (clamped, `clamp_time_samples`);
    the trainer asks `loopnerf.model.time_samples.auto_time_samples` for it."""
    from dataclasses import replace

    n = clamp_time_samples(n_samples)
    f = cfg.model.field
    if f.resolution[3] <= AUTO_TIME:
        cfg.model.field = replace(f, resolution=(*f.resolution[:3], n))
    cfg.model.proposals = tuple(
        replace(p, resolution=(*p.resolution[:3], n)) if p.resolution[3] <= AUTO_TIME else p for p in cfg.model.proposals
    )
    return cfg


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _build(cls, data):
    if not dataclasses.is_dataclass(cls):
        return data
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name not in hints:
            raise ConfigError(f"unknown config key {name!r} for {cls.__name__}")
        f = hints[name]
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(sub):
            kwargs[name] = _build(type(sub), value)
        elif name == "proposals":
            kwargs[name] = tuple(ProposalConfig(tuple(p["resolution"]), p["features"]) for p in value)
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict) -> Stage1Config:
    """The inverse of `config_to_dict`; unknown keys and values outside a field's choices are errors."""
    if isinstance(data.get("train"), dict) and "moving_focus_weight" not in data["train"]:
        # runs configured before the option drew every region pixel alike
        data = {**data, "train": {**data["train"], "moving_focus_weight": 1}}
    cfg = _build(Stage1Config, data)
    check_choices(cfg)
    return cfg
