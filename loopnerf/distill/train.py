"""Stage 2: distill the stage-1 field into a loop of F frames (`loopnerf distill`).

Method `loop` (the report's, DESIGN §5.3): each step picks a segment video, a random
crop and a temporal window; renders the F loop frames of that crop from the segment's
pose; and minimises VideoLoop3D's looping loss against the window, plus the stage-1
plane regularizers on the loop planes. Crops run coarse to fine: early crops are large
and rendered at the training size (downsampled), halving every `halve_every` steps (at
most `coarse_levels` times, ending on native crops); at each halving the
lowest-resolution loop planes still trained are frozen. `init` picks where the
loop planes start ('segment', the default: stage 1's time planes at F consecutive frames
of the longest still segment, the fitted scene already moving, from the frame where that
window nearly wraps; 'ones', the report's; 'mean'), `segments`
which segment videos supervise it ('all', or 'longest' for a one-view loop).

Method `naive` (the report's failure case): the loop planes start from the stage-1
time planes at the times of the first F frames and are fitted to the original frames
with frame i shown at loop phase (i mod F) / F, pixel by pixel, for `naive_steps` at
`naive_lr`.

Writes RUN/loop/ or RUN/naive/ (`loopnerf.run_folder` owns the layout): the config, a
resumable checkpoint, the final loop planes, a summary and a log. `DistillCommand` is both
the `loopnerf distill` command line (shortcut flags plus the preset's whole
`DistillConfig` under `--config.*`) and what `loopnerf.Run.distill` runs.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from tyro.conf import Positional

from loopnerf.choices import Preset, changed_fields, check_choice, check_choices
from loopnerf.errors import ConfigError, TrainingError
from loopnerf.model.optimizer import make_adam
from loopnerf.run_folder import LoopMethod, RunFolder


@dataclass
class LoopLossConfig:
    """Looping loss settings (VideoLoop3D's patch sizes)."""

    patch: int = 3
    frames: int = 5
    """Patch length in frames (VideoLoop3D: 3). 5 frames tie more of the loop's motion to
    one reference moment; on the demo capture the seam ratio went from 2.6-3.8 to 0.4."""
    stride: int = 2
    frame_stride: int = 1
    alpha: Optional[float] = 0.0
    """Completeness normalisation (VideoLoop3D's reference-view setting, 0); None = off.
    Off, a loop that starts static stays nearly static: its patches all match the same
    few reference patches."""
    wrap: Literal["append", "both"] = "both"
    """'both': every loop frame under the same number of patches (see `looping_loss`)."""


@dataclass
class DistillConfig:
    frames: int = 24
    """F: loop length in frames."""
    fps: float = 24.0
    """Playback rate of the loop, frames per second."""
    steps: int = 200
    """Steps of the loop (method 'loop'). From the 'segment' start the looping loss mostly
    mends the wrap, and with every frame trained (`wrap_frames` 0) every further step
    traded motion for it: on the demo capture (lr 1e-3) 200 steps kept a motion ratio of
    0.76 with seam ratio 0.62, 400 steps at lr 2e-3 0.62 / 0.60; with the default
    `wrap_frames` 300 steps 0.815 / 0.55 (wrap_frames 4) against 200 steps 0.816 / 0.61."""
    size: int = 32
    """Training crop side in rays (each step renders F x size x size rays)."""
    halve_every: int = 75
    """Steps between crop halvings (coarse to fine); 0 = fixed crops of `size`."""
    coarse_levels: int = 2
    """At most this many halvings: the first crops are `size` x 2^coarse_levels (report:
    192 px downsampled to 48, i.e. 2), fewer when the frames are smaller, so training
    always ends on native crops of `size` (given steps >= coarse_levels x halve_every)."""
    crop_sampling: Literal["area", "subsample"] = "subsample"
    """How a coarse crop (larger than `size`) meets its `size` x `size` rays: 'subsample'
    (default: every k-th reference pixel and the ray through that pixel's centre, both
    sides point samples at the same places) or 'area' (the reference area-averaged, one
    ray per super-pixel centre: a blurred target for a point-sampled render). On the demo
    capture (init 'segment', lr 2e-3, 400 steps, no plane TV) best-phase PSNR of the
    moving pixels 25.46 vs 25.31 dB, motion ratio 0.69 vs 0.67."""
    window: int = 0
    """Temporal window of the segment video per step, frames (>= F); 0 = the whole segment."""
    lr: float = 1e-3
    """Learning rate of the loop planes (cosine-decayed to a tenth). From the 'segment'
    start a small one keeps the stage-1 motion: on the demo capture at 200 steps with every
    frame trained, lr 5e-4 / 1e-3 / 2e-3 kept motion ratios 0.79 / 0.76 / 0.73 and seam
    ratios 0.97 / 0.62 / 0.52 (`wrap_frames` 4: lr 1e-3 0.816 / 0.61, 2e-3 0.813 / 0.41)."""
    naive_steps: int = 400
    """Steps of the naive baseline (method 'naive'; `steps` is the loop's)."""
    naive_lr: float = 1e-2
    """Learning rate of the naive baseline, a per-pixel fit from stage 1's planes (the
    rate both methods used before the loop got its own)."""
    seed: int = 0
    loss: LoopLossConfig = field(default_factory=LoopLossConfig)
    plane_tv: float = 0.0
    """TV of the loop planes along space. The space planes are frozen, so it only smooths
    the motion's detail: 0 on the demo capture gave best-phase PSNR 25.31 vs 24.92 dB and
    motion ratio 0.67 vs 0.61 (init 'segment', lr 2e-3, 400 steps)."""
    time_smoothness: float = 0.1
    l1_time: float = 1e-3
    checkpoint_every: int = 100
    naive_rays: int = 1024
    """Rays per step of the naive baseline."""
    segments: Literal["all", "longest"] = "all"
    """Which segment videos supervise the loop: 'all' (the report) or 'longest' (only the
    longest still segment, the default camera of eval, bake and the viewer). Before stage
    1 had a dynamic region its space-time planes fitted each still segment's appearance
    separately, and 'longest' was a way to keep one view's static region (45.5 dB against
    stage 1 at the default view, 14.8 dB at the novel camera); now the static region is
    stage 1's in every view whatever the segments, and 'all' (the report) is the default."""
    init_noise: float = 1e-3
    """With init 'ones' or 'mean' every loop frame starts equal, and the looping loss,
    whose target for identical frames is identical, cannot tell them apart: the loop
    would stay still. The loop planes start with this much seeded noise (relative to
    their mean magnitude). Before it existed only rounding in the time interpolation broke
    the tie, so loops of F = 8, 16 or 32 frames (phases k / F exact in binary) never
    moved."""
    wrap_frames: int = 3
    """With init 'segment': the looping loss changes only the loop frames within this many
    frames of the wrap (frames 0..w-1 and F-w..F-1); the others keep the stage-1 motion
    they start from exactly (their loop-plane rows get no update). 0: every frame trains
    (the report; always so with the other inits). The start is already a loop everywhere
    but at its wrap, and every step of the looping loss elsewhere traded motion for
    nothing: on the demo capture (lr 1e-3, 200 steps; best-phase PSNR of the moving
    pixels / motion ratio / seam ratio at the supervised camera) every frame 26.45 dB /
    0.764 / 0.77, w = 4 26.40 / 0.816 / 0.61, w = 3 26.38 / 0.824 / 0.59, w = 2 26.36 /
    0.831 / 0.58 (the untrained start 26.39 / 0.837 / 1.83)."""
    init: Literal["ones", "segment", "mean"] = "segment"
    """Where the loop planes start (method 'loop'): 'segment' (default: stage 1's time
    planes at F consecutive frame times of the longest still segment, starting where the
    segment video's frame F later looks most like the first, `best_wrap_start`: the scene
    stage 1 fitted, already moving with the capture's own motion, with a small jump at the
    wrap for the looping loss to mend), 'mean' (stage 1's time planes averaged over the frames of the
    supervising segments: the scene stage 1 fitted, standing still) or 'ones' (time planes
    as ones, the report's literal start; where stage 1 put static structure into its time
    planes this is a scene that is not there). With 'segment' and 'mean' the proposals use
    their time planes averaged over those frames and the L1 prior pulls towards that
    average; with 'ones', towards ones. Measured on the demo capture (stage 1 at 1000
    steps, static pixels of the supervised view against stage 1): ones 20.2 dB, the mean
    over all frames 25.8 dB, the mean over the segment's own frames 39.2 dB."""


DISTILL_PRESETS: dict[str, Callable[[], DistillConfig]] = {
    # tiny (12 px crops, few steps): lr 1e-3 leaves the wrap unmended (seam ratio 2.2 after
    # 240 steps on the natural-motion test capture), 1e-2 damps the motion below naive's
    "tiny": lambda: DistillConfig(frames=8, steps=40, naive_steps=40, lr=3e-3, size=12, halve_every=15, checkpoint_every=20, loss=LoopLossConfig(frames=3)),
    "cpu": DistillConfig,
    # the report's schedule and start (time planes as ones, area-downsampled coarse crops)
    "paper": lambda: DistillConfig(steps=4000, size=48, halve_every=1000, lr=1e-2, init="ones", plane_tv=0.1, crop_sampling="area"),
}
"""Distillation's preset table: name -> a fresh config."""


def distill_preset(name: Preset) -> DistillConfig:
    """A fresh copy of the named distillation preset."""
    check_choice(name, Preset, "preset")
    return DISTILL_PRESETS[name]()


@dataclass
class _Weights:
    plane_tv: float
    time_smoothness: float
    l1_time: float


def segment_init_times(videos, frames: int) -> np.ndarray:
    """[frames] capture times where the loop planes start (init 'segment'): `frames`
    consecutive frame times of the longest segment video, starting at the frame a whose
    video frame a + frames is closest to frame a (mean squared difference), so the
    stage-1 motion the loop starts from already nearly closes at its wrap (Schoedl et
    al.'s video-texture transition; ties go to the middle). Evenly resampled over the
    video's time range when it is too short for a wrap frame."""
    v = max(videos, key=lambda v: len(v.times))
    times = np.asarray(v.times, dtype=np.float64)
    if len(times) <= frames:
        return np.linspace(times[0], times[-1], frames)
    start = best_wrap_start(np.asarray(v.frames), frames)
    return times[start : start + frames]


def best_wrap_start(video: np.ndarray, frames: int) -> int:
    """The start a of the `frames`-frame window of video [T, H, W, C] (T > frames) whose
    wrap frame a + frames differs least from its first frame a (mean squared difference
    over all pixels; the nearest to the middle among equals)."""
    t = video.shape[0]
    cost = np.array([float(np.mean((video[a + frames].astype(np.float64) - video[a]) ** 2)) for a in range(t - frames)])
    middle = (t - frames - 1) / 2.0
    order = np.lexsort((np.abs(np.arange(len(cost)) - middle), np.round(cost, 12)))
    return int(order[0])


def wrap_rows(frames: int, wrap_frames: int) -> torch.Tensor:
    """[frames] bool: the loop frames (= loop-plane rows) within `wrap_frames` of the wrap,
    i.e. k < wrap_frames or k >= frames - wrap_frames; every frame when wrap_frames is 0
    or covers the loop."""
    if wrap_frames < 0:
        raise ConfigError(f"wrap_frames must be >= 0 (0: every loop frame trains), got {wrap_frames}")
    if wrap_frames == 0 or 2 * wrap_frames >= frames:
        return torch.ones(frames, dtype=torch.bool)
    k = torch.arange(frames)
    return (k < wrap_frames) | (k >= frames - wrap_frames)


def crop_schedule(step: int, cfg: DistillConfig, full: int) -> tuple[int, int]:
    """(crop side in video pixels, level) at `step`: starts at `size` x 2^L, L the largest
    number of halvings <= `coarse_levels` whose crop fits `full`, and halves every
    `halve_every` steps down to native crops of `size`."""
    if cfg.halve_every <= 0:
        return min(cfg.size, full), 0
    levels = 0
    while levels < cfg.coarse_levels and cfg.size * 2 ** (levels + 1) <= full:
        levels += 1
    level = min(step // cfg.halve_every, levels)
    return min(cfg.size * 2 ** (levels - level), full), level


class Distiller:
    """Owns the loop model, its optimizer and RNG, and the segment videos."""

    def __init__(self, run: Path, cfg: DistillConfig, method: LoopMethod = "loop", quiet: bool = False) -> None:
        from loopnerf.distill.loop_model import LoopModel, init_from_stage1_time
        from loopnerf.kernels.host_memory import keep_freed_memory

        check_choices(cfg)
        keep_freed_memory()  # buffers of the same sizes every step: reuse them, no page faults
        trained_rows = wrap_rows(cfg.frames, cfg.wrap_frames)  # (checks wrap_frames before any work)
        self.folder = RunFolder(run)
        self.cfg = cfg
        self.method = method
        self.quiet = quiet
        self.dir = self.folder.loop_dir(method)
        self.stage1, self.stage1_info = self.folder.load_stage1()
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        init = None
        if method == "naive":
            self.capture = self.folder.load_capture()
            n = len(self.capture)
            order = np.argsort(self.capture.times, kind="stable")
            init = init_from_stage1_time(self.stage1, self.capture.times[order[: cfg.frames]])
            self.frame_index = np.empty(n, dtype=np.int64)
            self.frame_index[order] = np.arange(n)
        self.videos = None
        if method == "loop":
            from loopnerf.distill.segment_videos import render_segment_videos

            self.videos = render_segment_videos(self.folder.path, self.stage1, fps=cfg.fps, quiet=quiet)
            if cfg.segments == "longest":
                self.videos = [max(self.videos, key=lambda v: len(v.frames))]
            short = [v.index for v in self.videos if len(v.frames) < cfg.loss.frames]
            if short:
                raise ConfigError(f"segments {short} are shorter than the loss's {cfg.loss.frames}-frame patches")
            if cfg.init == "segment":
                init = init_from_stage1_time(self.stage1, segment_init_times(self.videos, cfg.frames))
        base = "ones" if cfg.init == "ones" else "mean"
        # the static anchor and the proposals: stage 1 averaged over the frames the loop
        # learns from (its planes differ from segment to segment), or over all (naive)
        base_times = None
        if self.videos is not None and base == "mean":
            base_times = np.concatenate([np.asarray(v.times, dtype=np.float64) for v in self.videos])
        self.model = LoopModel(self.stage1, cfg.frames, init, base=base, base_times=base_times)
        if method == "loop" and init is None and cfg.init_noise > 0:
            noise = torch.Generator().manual_seed(cfg.seed + 7919)  # its own stream: the crops' draws stay as they were
            with torch.no_grad():
                for p in self.model.field.loop_planes:
                    p.add_(torch.randn(p.shape, generator=noise) * (cfg.init_noise * float(p.abs().mean())))
        # the naive baseline keeps its own schedule (`naive_steps`, `naive_lr`)
        self.steps, self.lr = (cfg.steps, cfg.lr) if method == "loop" else (cfg.naive_steps, cfg.naive_lr)
        self.optimizer = make_adam(self.model.loop_parameters(), self.lr)
        # init 'segment': only the rows near the wrap train (`DistillConfig.wrap_frames`);
        # a row whose gradient is always zero keeps Adam's moments at zero, so it never moves
        self.held_rows = None
        if method == "loop" and cfg.init == "segment" and not bool(trained_rows.all()):
            self.held_rows = ~trained_rows
        # with the Taichi kernels the loop planes' regularizers run fused (value + gradient
        # in one pass into .grad, after backward); with the torch twins under autograd
        self.fused_regularizers = self.model.cfg.kernel_backend == "taichi"
        self.step = 0

    # ---------------------------------------------------------------- state
    def save(self, final: bool = False) -> None:
        from loopnerf.model.checkpoint import save_checkpoint

        self.dir.mkdir(parents=True, exist_ok=True)
        self.folder.write_loop_config(self.method, self.config_dict())
        holder = torch.nn.Module()
        holder.loop_planes = self.model.field.loop_planes
        meta = {"step": self.step}
        # Adam state is keyed by the holder's parameter names (loop_planes.N)
        save_checkpoint(self.folder.loop_checkpoint(self.method), holder, self.optimizer, self.generator, meta)
        if final:
            save_checkpoint(self.folder.loop_weights(self.method), holder, None, None, meta)

    def resume(self) -> None:
        from loopnerf.model.checkpoint import load_checkpoint

        holder = torch.nn.Module()
        holder.loop_planes = self.model.field.loop_planes
        meta = load_checkpoint(self.folder.loop_checkpoint(self.method), holder, self.optimizer, self.generator)
        self.step = int(meta.get("step", 0))
        self._apply_freezing()

    def config_dict(self) -> dict:
        return {
            "stage": "loop", "method": self.method, "frames": self.cfg.frames, "fps": self.cfg.fps, "config": asdict(self.cfg),
            "base_times": self.model.base_times,
        }

    # ---------------------------------------------------------------- steps
    def _apply_freezing(self) -> None:
        """Freeze the loop planes of scales below the current coarse-to-fine level."""
        if self.method != "loop" or self.videos is None:
            return
        full = min(min(v.frames.shape[1:3]) for v in self.videos)
        _, level = crop_schedule(self.step, self.cfg, full)
        n_scales = self.model.field.n_scales
        for s in range(n_scales):
            frozen = s < min(level, n_scales - 1)
            for a in range(3):
                self.model.field.loop_planes[s * 3 + a].requires_grad_(not frozen)

    def _weights(self) -> _Weights:
        c = self.cfg
        return _Weights(c.plane_tv, c.time_smoothness, c.l1_time)

    def loop_step_loss(self) -> tuple[torch.Tensor, dict]:
        """Looping loss of one random crop of one random segment window."""
        from loopnerf.distill.looping_loss import looping_loss
        from loopnerf.data.rays import rays_for_pixels

        cfg, g = self.cfg, self.generator
        v = self.videos[int(torch.randint(len(self.videos), (1,), generator=g))]
        t_len, h, w, _ = v.frames.shape
        crop, _ = crop_schedule(self.step, cfg, min(h, w))
        y0 = int(torch.randint(h - crop + 1, (1,), generator=g))
        x0 = int(torch.randint(w - crop + 1, (1,), generator=g))
        win = t_len if cfg.window <= 0 else min(max(cfg.window, cfg.frames), t_len)
        t0 = int(torch.randint(t_len - win + 1, (1,), generator=g))
        n = min(cfg.size, crop)
        jj = torch.arange(n, dtype=torch.float32)
        if crop != n and cfg.crop_sampling == "subsample":
            k_ = crop // n  # crops are size x 2^level, so k_ is a whole number
            ref = torch.from_numpy(np.ascontiguousarray(v.frames[t0 : t0 + win, y0 : y0 + crop : k_, x0 : x0 + crop : k_]))
            u = (x0 + jj * k_)[None, :].expand(n, n).reshape(-1)
            vv = (y0 + jj * k_)[:, None].expand(n, n).reshape(-1)
        elif crop == n or cfg.crop_sampling == "area":
            ref = torch.from_numpy(v.frames[t0 : t0 + win, y0 : y0 + crop, x0 : x0 + crop])
            if crop != n:  # area-downsample the reference to the rays' grid
                ref = F.interpolate(ref.permute(0, 3, 1, 2), size=(n, n), mode="area").permute(0, 2, 3, 1)
            step = crop / n
            u = (x0 + (jj + 0.5) * step - 0.5)[None, :].expand(n, n).reshape(-1)
            vv = (y0 + (jj + 0.5) * step - 0.5)[:, None].expand(n, n).reshape(-1)
        else:
            check_choice(cfg.crop_sampling, ("area", "subsample"), "crop_sampling")
        k = v.intrinsics
        c2w = torch.tensor(v.pose, dtype=torch.float32)
        intr = torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float32)
        o, d = rays_for_pixels(c2w, intr, u, vv)
        f_ = cfg.frames
        # The proposal fields see static geometry only, so a ray's samples are the same
        # at every phase: sample once per ray, then evaluate the loop field at the F phases.
        with torch.no_grad():
            smp = self.model.sample_along_rays(o, d, torch.zeros(n * n))
        rendered = self.render_loop_crop(o, d, smp, f_).view(f_, n, n, 3)
        lc = cfg.loss
        loss_loop = looping_loss(rendered, ref, patch=lc.patch, frames=lc.frames, stride=lc.stride, frame_stride=lc.frame_stride, alpha=lc.alpha, wrap=lc.wrap)
        terms = {"looping": loss_loop}
        if not self.fused_regularizers:
            terms.update(self.model.loop_regularizers(self._weights()))
        return sum(terms.values()), terms

    def render_loop_crop(self, o, d, smp, frames: int) -> torch.Tensor:
        """rgb [F, R, 3] of rays (origins o, directions d [R, 3], proposal samples `smp`)
        at the loop phases k / F, phase-independent work done once (`render_phases`)."""
        return self.model.render_phases(o, d, smp["t_edges"], smp["hit"], torch.arange(frames, dtype=torch.float32) / frames)["rgb"]

    def naive_step_loss(self) -> tuple[torch.Tensor, dict]:
        """Pixel loss on the original frames, frame i at phase (i mod F) / F."""
        from loopnerf.model.ray_batch import RayBatcher

        if not hasattr(self, "batcher"):
            self.batcher = RayBatcher(self.capture, self.capture.train_idx)
            idx = self.frame_index[self.capture.train_idx]
            self.batch_phase = torch.tensor((idx % self.cfg.frames) / self.cfg.frames, dtype=torch.float32)
        batch = self.batcher.sample(self.cfg.naive_rays, self.generator)
        out = self.model(batch["origins"], batch["dirs"], self.batch_phase[batch["frame"]])
        rgb = batch["rgb"]
        terms = {"mse": (out["rgb"] - rgb).square().mean()}
        if not self.fused_regularizers:
            terms.update(self.model.loop_regularizers(self._weights()))
        return sum(terms.values()), terms

    def train_step(self) -> dict:
        cfg = self.cfg
        self._apply_freezing()
        for gr in self.optimizer.param_groups:
            gr["lr"] = self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, self.step / max(self.steps, 1)))))
        loss, terms = self.loop_step_loss() if self.method == "loop" else self.naive_step_loss()
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite distillation loss at step {self.step}; the last checkpoint is {self.folder.loop_checkpoint(self.method)}")
        loss.backward()
        if self.fused_regularizers:
            from loopnerf.distill.loop_model import add_loop_regularizer_grads

            terms.update(add_loop_regularizer_grads(self.model, self._weights()))
            if not all(torch.isfinite(v) for v in terms.values()):
                raise TrainingError(f"non-finite distillation regularizer at step {self.step}; the last checkpoint is {self.folder.loop_checkpoint(self.method)}")
        if self.held_rows is not None:
            for p in self.model.loop_parameters():
                if p.grad is not None:
                    p.grad[self.held_rows] = 0.0
        self.optimizer.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    def run_training(self, progress: Optional[Callable[[int, int], None]] = None) -> dict:
        """Train to `steps`, save the final loop planes and RUN/<method>/summary.json.

        progress: called as `progress(step, steps)` every 10 steps instead of the bar."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cfg = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        cols = [TextColumn(f"distill ({self.method})"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        from loopnerf.data.progress import step_lines

        lines = step_lines(f"distill ({self.method})", self.steps, quiet=self.quiet or progress is not None, start=self.step)
        with open(self.folder.loop_log(self.method), "a", buffering=1) as log, Progress(*cols, disable=self.quiet or progress is not None or lines.active) as bar:
            task = bar.add_task("d", total=self.steps, completed=self.step, info="")
            while self.step < self.steps:
                terms = self.train_step()
                if self.step % 10 == 0 or self.step == self.steps:
                    info = "  ".join(f"{k} {v:.4f}" for k, v in terms.items())
                    bar.update(task, completed=self.step, info=info)
                    lines.update(self.step, info)
                    log.write(json.dumps({"step": self.step, **terms}) + "\n")
                    if progress is not None:
                        progress(self.step, self.steps)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
        wall = time.perf_counter() - t0
        self.save(final=True)
        counts = self.model.parameter_count()
        stage1_counts = self.stage1.parameter_count()
        summary = {
            "method": self.method,
            "steps": self.step,
            "seconds": wall,
            "loop_time_parameters": counts["time_dependent"],
            "stage1_time_parameters": stage1_counts["time_dependent"],
            "compression": stage1_counts["time_dependent"] / max(counts["time_dependent"], 1),
        }
        from loopnerf.json_file import save_json_atomic

        save_json_atomic(self.folder.loop_summary_path(self.method), summary)
        return summary


@dataclass
class DistillCommand:
    """Stage 2: distill RUN's stage-1 field into a loop of F frames (RUN/loop/ or RUN/naive/).

    Needs RUN/stage1 (`loopnerf train`) and RUN/segments.json (`loopnerf select`); renders the
    segment videos RUN/segments/NN.{npy,mp4} first if they are missing. The shortcut flags
    set the most used fields of the preset's config, every other field is under --config.*.
    With --resume the loop continues as it was configured (only --steps may change).

    Args:
        run: the run directory.
        frames: F, the loop length in frames (default: the preset's, 24).
        preset: 'tiny' (tests), 'cpu' (default), 'paper' (GPU; the report's schedule).
        method: 'loop' (the report's looping distillation) or 'naive' (baseline: t' = t mod F).
        steps: the number of steps (the preset's by default).
        fps: playback rate of the loop in frames per second (default 24).
        init: where the loop planes start (the preset's; `cpu`: 'segment', stage 1's time
            planes at F consecutive frames of the longest still segment, where that window
            wraps best; 'ones': the report's start, time planes as ones, the `paper` preset's;
            'mean': their average over the supervising frames).
        segments: which segment videos supervise the loop ('all', default, or 'longest': a
            loop for the default view only, see DistillConfig.segments).
        resume: continue from RUN/<method>/'s checkpoint.
        rerender: render the segment videos again even if they exist.
        quiet: no progress bars.
        config: the full distillation config (the preset's values unless set here).
    """

    run: Positional[Annotated[Path, tyro.conf.arg(metavar="RUN")]]
    frames: Optional[int] = None
    preset: Preset = "cpu"
    method: LoopMethod = "loop"
    steps: Optional[int] = None
    fps: Optional[float] = None
    init: Optional[Literal["segment", "mean", "ones"]] = None
    segments: Optional[Literal["all", "longest"]] = None
    resume: bool = False
    rerender: bool = False
    quiet: bool = False
    config: DistillConfig = field(default_factory=DistillConfig)

    @classmethod
    def cli_default(cls, args: list[str]) -> "DistillCommand":
        """The preset's config, or with --resume the loop's own, as the command line's defaults."""
        import argparse

        import tyro

        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("run", nargs="?")
        pre.add_argument("--preset", default="cpu")
        pre.add_argument("--method", default="loop")
        pre.add_argument("--resume", action="store_true")
        known, _ = pre.parse_known_args(args)
        name = known.preset if known.preset in DISTILL_PRESETS else "cpu"  # tyro reports a bad value
        if known.resume and known.run and known.method in ("loop", "naive") and RunFolder(known.run).has_loop(known.method):
            saved = _saved_config(RunFolder(known.run), known.method)
            return cls(run=tyro.MISSING, preset=name, config=saved)
        return cls(run=tyro.MISSING, preset=name, config=distill_preset(name))

    def distill_config(self) -> DistillConfig:
        """`config` with the shortcut flags applied (a new object)."""
        cfg = copy.deepcopy(self.config)
        if cfg == DistillConfig() and self.preset != "cpu":
            cfg = distill_preset(self.preset)  # a Python caller named a preset only
        if self.frames is not None:
            if self.frames < 2:
                raise ConfigError(f"--frames must be at least 2, got {self.frames}")
            cfg.frames = int(self.frames)
        for name in ("steps", "fps", "init", "segments"):
            if getattr(self, name) is not None:
                # --steps is the steps of the method being distilled
                setattr(cfg, "naive_steps" if name == "steps" and self.method == "naive" else name, getattr(self, name))
        check_choices(cfg)
        return cfg

    def execute(self, progress: Optional[Callable[[int, int], None]] = None) -> dict:
        """Distil; returns the summary (method, steps, seconds, parameter counts, compression)."""
        folder = RunFolder(self.run)
        if self.resume:
            if not folder.has_loop(self.method):
                raise ConfigError(f"{folder.path}: nothing to resume (no '{self.method}' loop there)")
            saved = _saved_config(folder, self.method)
            cfg = (self if self.config != DistillConfig() else replace(self, config=saved)).distill_config()
            diff = [d for d in changed_fields(saved, cfg) if not d.startswith(("steps ", "naive_steps "))]
            if diff:
                raise ConfigError(
                    f"--resume continues {folder.loop_dir(self.method)} as it was configured, but these options differ "
                    f"from its config: {'; '.join(diff)}. Drop them, or distil anew (without --resume)"
                )
        else:
            cfg = self.distill_config()
        if self.rerender:
            from loopnerf.distill.segment_videos import render_segment_videos

            render_segment_videos(folder.path, force=True, fps=cfg.fps, quiet=self.quiet)
        d = Distiller(folder.path, cfg, self.method, quiet=self.quiet)
        if self.resume:
            d.resume()
        return d.run_training(progress)

    def __call__(self) -> int:
        s = self.execute()
        print(
            f"distill ({self.method}) done in {s['seconds']:.0f} s: {s['loop_time_parameters']:,} time-dependent parameters "
            f"(stage 1: {s['stage1_time_parameters']:,}, {s['compression']:.1f}x fewer); loop in {RunFolder(self.run).loop_dir(self.method)}"
        )
        return 0


def _saved_config(folder: RunFolder, method: str) -> DistillConfig:
    """The DistillConfig a run's loop was trained with (its config.json)."""
    info = folder.read_loop_config(method)
    c = dict(info.get("config", {}))
    c.setdefault("wrap_frames", 0)  # loops configured before the option trained every frame
    try:
        loss = LoopLossConfig(**c.pop("loss", {}))
        return DistillConfig(**c, loss=loss)
    except TypeError as err:
        raise ConfigError(f"{folder.loop_config_path(method)}: not a distillation config ({err})") from None


def distill(run: Path, **options) -> int:
    """`loopnerf distill` from Python with the command's keyword options (see `DistillCommand`)."""
    return DistillCommand(run=Path(run), **options)()
