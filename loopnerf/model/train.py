"""Stage 1: fit the dynamic k-Planes field to a capture (`loopnerf train`).

Writes RUN/stage1/ (`loopnerf.run_folder` owns the layout): the config with the
capture's path and load options, a resumable checkpoint (weights + Adam + RNG state,
written atomically every `checkpoint_every` steps), the final weights, the held-out
evaluation and a log.

`TrainCommand` is both the `loopnerf train` command line (tyro builds it from the
dataclass: the shortcut flags, and every field of the chosen preset's `Stage1Config`
under `--config.*`) and what `loopnerf.fit` runs from Python.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Callable, Optional

import numpy as np
import torch
import tyro
from tyro.conf import Positional

from loopnerf.choices import Decoder, KernelBackend, Preset, changed_fields
from loopnerf.errors import ConfigError, TrainingError
from loopnerf.json_file import save_json_atomic
from loopnerf.model.checkpoint import load_checkpoint, save_checkpoint
from loopnerf.model.config import AUTO_TIME, Stage1Config, config_from_dict, config_to_dict, preset as make_preset, resolve_time_resolution
from loopnerf.model.kplanes_model import KPlanesModel
from loopnerf.model.optimizer import make_adam
from loopnerf.model.ray_batch import RayBatcher
from loopnerf.model.render_image import render_image
from loopnerf.run_folder import RunFolder

Progress = Callable[[int, int], None]
"""A progress callback: `progress(done, total)`, called as a long step advances."""


def lr_factor(step: int, warmup: int, total: int, final: float = 0.01) -> float:
    """Linear warm-up then cosine decay to `final` x the base learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    x = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * x))


def psnr_of(mse: float) -> float:
    return float(-10.0 * math.log10(max(mse, 1e-10)))


class Stage1Trainer:
    """Owns the model, optimizer, RNG and run directory of one stage-1 fit."""

    def __init__(self, capture, cfg: Stage1Config, run_dir: Path, capture_ref: dict | None = None, quiet: bool = False) -> None:
        from loopnerf.kernels.host_memory import keep_freed_memory

        keep_freed_memory()  # plane-sized buffers every step: reuse them, no page faults
        self.capture = capture
        self.cfg = cfg
        self.folder = RunFolder(run_dir)
        self.dir = self.folder.stage1_dir
        self.quiet = quiet
        self.capture_ref = capture_ref or {}
        from loopnerf.model.time_samples import auto_time_samples

        n_time, self.time_note = auto_time_samples(capture)
        if cfg.model.field.resolution[3] > AUTO_TIME:
            self.time_note = f"time samples: {cfg.model.field.resolution[3]} (set by the config)"
        resolve_time_resolution(cfg, n_time)
        torch.manual_seed(cfg.train.seed)
        box = capture.scene_box()
        if cfg.model.contraction == "auto":
            from loopnerf.model.contraction_choice import choose_contraction

            cfg.model.contraction, self.contraction_note = choose_contraction(capture, box, cfg.model.near, cfg.train.seed)
        else:
            self.contraction_note = f"contraction: {cfg.model.contraction} (set by the config)"
        self.model = KPlanesModel(cfg.model, box, seed=cfg.train.seed)
        self.region_note = "dynamic region: everywhere (model.dynamic_region = 'everywhere')"
        still_pixels: dict = {}
        if cfg.model.dynamic_region == "auto":
            from loopnerf.model.motion_mask import estimate_motion_mask

            mask = estimate_motion_mask(capture, box, cfg.model.dynamic_region_resolution, cfg.model.contraction)
            self.model.dynamic_region.set(torch.from_numpy(mask.grid))
            self.region_note = mask.describe()
            still_pixels = mask.still_pixels
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.optimizer = make_adam(self.model.parameters(), cfg.train.lr)
        # the Taichi backend also fuses the plane regularizers (value + gradient in one
        # pass, written into the planes' .grad); the torch backend keeps them under autograd
        self.fused_regularizers = cfg.model.kernel_backend == "taichi"
        self.batcher = RayBatcher(capture, capture.train_idx)
        self.focus_note = ""
        fraction = cfg.train.dynamic_ray_fraction
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"train.dynamic_ray_fraction must be in [0, 1), got {fraction}")
        weight = cfg.train.moving_focus_weight
        if not (isinstance(weight, int) and weight >= 1):
            raise ConfigError(f"train.moving_focus_weight must be an integer >= 1, got {weight}")
        if fraction > 0 and not self.model.dynamic_region.everywhere:
            from loopnerf.model.ray_focus import focus_indices

            ids = np.asarray(capture.train_idx)
            pixels, share = focus_indices(self.model, capture.c2w[ids], capture.intrinsics_array()[ids], capture.height,
                                          capture.width, torch.Generator().manual_seed(cfg.train.seed),
                                          [still_pixels.get(int(i)) for i in ids] if still_pixels else None, weight)
            self.batcher.focus(pixels, fraction)
            where = f"; at the still stretches those seen moving {weight}x as often" if still_pixels and weight > 1 else ""
            self.focus_note = f"rays: {fraction:.0%} of each batch among the {share:.1%} of training pixels that look into the dynamic region{where}"
        self.step = 0
        self.skipped = 0
        self.skip_nonfinite = False

    # ------------------------------------------------------------ state
    def config_dict(self) -> dict:
        return {
            "stage": "stage1",
            "config": config_to_dict(self.cfg),
            "box": self.model.box.tolist(),
            **self.capture_ref,
        }

    def save(self, final: bool = False) -> None:
        meta = {"step": self.step, "skipped": self.skipped}
        save_checkpoint(self.folder.stage1_checkpoint, self.model, self.optimizer, self.generator, meta)
        if final:
            save_checkpoint(self.folder.stage1_weights, self.model, None, None, meta)

    def resume(self) -> None:
        meta = load_checkpoint(self.folder.stage1_checkpoint, self.model, self.optimizer, self.generator)
        self.step = int(meta.get("step", 0))
        self.skipped = int(meta.get("skipped", 0))

    # ------------------------------------------------------------- steps
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Loss of one batch of rays: photometric MSE + sampling losses + plane regularizers."""
        tc = self.cfg.train
        out = self.model(batch["origins"], batch["dirs"], batch["times"], step=self.step, anneal_steps=tc.proposal_anneal_steps, training=True, generator=self.generator)
        mse = (out["rgb"] - batch["rgb"]).square().mean()
        terms = {"mse": mse}
        terms.update(self.model.sampling_losses(out, tc.losses))
        terms.update(self.model.view_consistency(out, tc.losses, self.generator))
        if not self.fused_regularizers:
            terms.update(self.model.regularizers(tc.losses))
        loss = sum(terms.values())
        return loss, terms

    def _nonfinite(self, terms: dict) -> dict:
        """Stop with the terms that went non-finite, or (--skip-nonfinite) skip the step."""
        if not self.skip_nonfinite:
            bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v)) or "loss"
            raise TrainingError(
                f"non-finite loss at step {self.step} (in: {bad}); the last good checkpoint is "
                f"{self.folder.stage1_checkpoint}. Lower the learning rate, or pass --skip-nonfinite "
                f"to skip such steps"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        self.step += 1
        return {"loss": float("nan"), "psnr": float("nan"), "skipped": True}

    def train_step(self) -> dict:
        tc = self.cfg.train
        for g in self.optimizer.param_groups:
            g["lr"] = tc.lr * lr_factor(self.step, tc.warmup_steps, tc.steps)
        batch = self.batcher.sample(tc.rays, self.generator)
        loss, terms = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return self._nonfinite(terms)
        loss.backward()
        if self.fused_regularizers:
            reg = self.model.add_regularizer_grads(tc.losses)
            terms.update(reg)
            loss = loss.detach() + sum(reg.values())
            if not torch.isfinite(loss):
                return self._nonfinite(terms)
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach()), "psnr": psnr_of(float(terms["mse"].detach()))}

    # -------------------------------------------------------------- eval
    def evaluate(self, frames: Optional[int] = None, write: bool = True) -> dict:
        """Render held-out frames; PSNR/SSIM per frame and mean; eval.json + eval.png."""
        from loopnerf.image_metrics import psnr, ssim

        cap = self.capture
        ids = list(cap.eval_idx) if len(cap.eval_idx) else list(cap.train_idx[:: max(1, len(cap.train_idx) // 4)])
        if frames is not None:
            ids = ids[:: max(1, math.ceil(len(ids) / frames))][:frames]
        rows = []
        gts, renders = [], []
        for i in ids:
            r = render_image(self.model, cap.c2w[i], cap.intrinsics[i], float(cap.times[i]))
            gt = cap.images_float([i])[0]
            gts.append(gt)
            renders.append(r["rgb"])
            rows.append({"frame": int(i), "time": float(cap.times[i]), "psnr": float(psnr(r["rgb"], gt)), "ssim": float(ssim(r["rgb"], gt))})
        result = {
            "step": self.step,
            "held_out": bool(len(cap.eval_idx)),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "ssim": float(np.mean([r["ssim"] for r in rows])),
            "frames": rows,
        }
        if write:
            save_json_atomic(self.folder.stage1_eval_path, result)
            import imageio.v3 as iio

            k = min(len(gts), 8)
            strip = np.concatenate([np.concatenate(gts[:k], axis=1), np.concatenate(renders[:k], axis=1)], axis=0)
            iio.imwrite(self.folder.stage1_eval_png, (np.clip(strip, 0, 1) * 255).astype(np.uint8))
        return result

    # --------------------------------------------------------------- run
    def run(self, progress: Optional[Progress] = None) -> dict:
        """Train to `train.steps`, then write the final weights and the evaluation.

        progress: called as `progress(step, steps)` every 10 steps instead of the
        progress bar (which `quiet` also turns off)."""
        tc = self.cfg.train
        self.dir.mkdir(parents=True, exist_ok=True)
        self.folder.write_stage1_config(self.config_dict())
        log = open(self.folder.stage1_log, "a", buffering=1)
        log.write(json.dumps({"step": self.step, "dynamic_region": self.region_note, "dynamic_fraction": self.model.dynamic_region.fraction(),
                              "time_samples": self.cfg.model.field.resolution[3], "time_note": self.time_note,
                              "contraction": self.cfg.model.contraction, "contraction_note": self.contraction_note,
                              "focus_note": self.focus_note}) + "\n")
        if not self.quiet:
            print(self.region_note, flush=True)
            print(self.time_note, flush=True)
            print(self.contraction_note, flush=True)
            if self.focus_note:
                print(self.focus_note, flush=True)
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cols = [TextColumn("stage 1"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        t0 = time.perf_counter()
        last = {"loss": float("nan"), "psnr": float("nan")}
        from loopnerf.data.progress import step_lines

        lines = step_lines("stage 1", tc.steps, quiet=self.quiet or progress is not None, start=self.step)
        with RichProgress(*cols, disable=self.quiet or progress is not None or lines.active, transient=False) as bar:
            task = bar.add_task("fit", total=tc.steps, completed=self.step, info="")
            steps_done = 0
            tick = time.perf_counter()
            while self.step < tc.steps:
                last = self.train_step()
                steps_done += 1
                if self.step % 10 == 0 or self.step == tc.steps:
                    now = time.perf_counter()
                    rate = steps_done * tc.rays / max(now - tick, 1e-9)
                    tick, steps_done = now, 0
                    info = f"loss {last['loss']:.4f}  psnr {last['psnr']:.2f}  {rate:,.0f} rays/s"
                    bar.update(task, completed=self.step, info=info)
                    lines.update(self.step, info)
                    if progress is not None:
                        progress(self.step, tc.steps)
                    log.write(json.dumps({"step": self.step, **last, "rays_per_s": rate}) + "\n")
                if tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                    self.save()
                if tc.eval_every and self.step % tc.eval_every == 0 and self.step < tc.steps:
                    ev = self.evaluate(tc.eval_frames, write=False)
                    log.write(json.dumps({"step": self.step, "eval_psnr": ev["psnr"]}) + "\n")
        log.close()
        wall = time.perf_counter() - t0
        self.save(final=True)
        result = self.evaluate()
        result.update(train_seconds=wall, skipped_steps=self.skipped, dynamic_fraction=self.model.dynamic_region.fraction())
        save_json_atomic(self.folder.stage1_eval_path, result)
        return result


def capture_background(cap) -> tuple[float, float, float]:
    """The colour behind a capture's scene: what its loader or writer recorded, black for
    the D-NeRF npz (composited on black), else white."""
    meta = cap.meta or {}
    bg = meta.get("background") or meta.get("extra", {}).get("loopnerf_synth", {}).get("background")
    if bg is None and meta.get("format") == "dnerf_npz":
        bg = (0.0, 0.0, 0.0)
    return tuple(float(c) for c in (bg if bg is not None else (1.0, 1.0, 1.0)))


@dataclass
class TrainCommand:
    """Fit a dynamic k-Planes field to CAPTURE (stage 1), writing OUT/stage1/.

    The shortcut flags (--steps, --rays, --decoder, ...) set the most used fields of the
    preset's config; every other field is under --config.* (its defaults shown are the
    chosen --preset's). With --resume the run continues as it was configured: any option
    that would change its config (other than --steps, to train longer) is an error.

    Args:
        capture: a capture: nerfstudio folder / transforms.json, D-NeRF folder, D-NeRF .npz,
            or LLFF folder (poses_bounds.npy + videos).
        out: run directory (created); everything a run makes goes there.
        preset: 'tiny' (seconds, for tests), 'cpu' (default; ~10 min on 2 cores), 'paper' (GPU).
        steps: the number of optimisation steps (the preset's by default).
        rays: rays per step.
        decoder: 'linear' (bakeable, fast) or 'mlp' (hybrid).
        time_resolution: time samples of the space-time planes (default: chosen from the
            capture: one per frame when the camera rests somewhere, which a video texture's
            fast motion needs; one per 4 training frames when every frame is a new
            viewpoint, D-NeRF style, where one per frame overfits the viewpoints).
        kernel: 'taichi' (fast kernels, default) or 'torch' (plain reference twins).
        background: colour behind the scene, RGB in [0, 1] (default: what the capture
            records, else white; D-NeRF npz: black).
        downscale: integer image downscale factor applied on load.
        resume: continue from OUT/stage1/'s checkpoint with the same step, optimizer and RNG state.
        skip_nonfinite: skip (and count) steps whose loss is NaN/Inf instead of stopping.
        seed: random seed (initialisation and ray sampling; the preset's, 0, by default).
        quiet: no progress bar.
        config: the full stage-1 config (the preset's values unless set here).
    """

    capture: Positional[Annotated[Path, tyro.conf.arg(metavar="CAPTURE")]]
    out: Path = Path("runs/run")
    preset: Preset = "cpu"
    steps: Optional[int] = None
    rays: Optional[int] = None
    decoder: Optional[Decoder] = None
    time_resolution: Optional[int] = None
    kernel: Optional[KernelBackend] = None
    background: Optional[tuple[float, float, float]] = None
    downscale: int = 1
    resume: bool = False
    skip_nonfinite: bool = False
    seed: Optional[int] = None
    quiet: bool = False
    config: Stage1Config = field(default_factory=Stage1Config)

    @classmethod
    def cli_default(cls, args: list[str]) -> "TrainCommand":
        """The defaults the command line starts from: the chosen preset's config, or with
        --resume the run's own (so --help and the checks show what the run holds)."""
        import argparse

        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--preset", default="cpu")
        pre.add_argument("--out", type=Path, default=Path("runs/run"))
        pre.add_argument("--resume", action="store_true")
        known, _ = pre.parse_known_args(args)
        import tyro

        folder = RunFolder(known.out)
        if known.resume and folder.has_stage1():
            cfg = config_from_dict(folder.read_stage1_config()["config"])
            return cls(capture=tyro.MISSING, preset=cfg.preset, config=cfg)
        name = known.preset if known.preset in ("tiny", "cpu", "paper") else "cpu"  # tyro reports a bad value
        return cls(capture=tyro.MISSING, preset=name, config=make_preset(name))

    def stage1_config(self) -> Stage1Config:
        """`config` with the shortcut flags applied (a new object; `config` is untouched)."""
        cfg = copy.deepcopy(self.config)
        if cfg.preset != self.preset and not self.resume:
            if cfg != Stage1Config():
                raise ConfigError(f"config was built from preset {cfg.preset!r} but preset is {self.preset!r}: give one of them")
            cfg = make_preset(self.preset)  # a Python caller named a preset only
        if self.steps is not None:
            cfg.train.steps = int(self.steps)
        if self.rays is not None:
            cfg.train.rays = int(self.rays)
        if self.decoder is not None:
            cfg.model.field = replace(cfg.model.field, decoder=self.decoder)
        if self.time_resolution is not None:
            if self.time_resolution < 2:
                raise ConfigError(f"--time-resolution must be at least 2, got {self.time_resolution}")
            f = cfg.model.field
            cfg.model.field = replace(f, resolution=(*f.resolution[:3], self.time_resolution))
            cfg.model.proposals = tuple(replace(p, resolution=(*p.resolution[:3], self.time_resolution)) for p in cfg.model.proposals)
        if self.kernel is not None:
            cfg.model.kernel_backend = self.kernel
        if self.background is not None:
            cfg.model.background = tuple(float(c) for c in self.background)
        if self.seed is not None:
            cfg.train.seed = int(self.seed)
        if self.downscale < 1:
            raise ConfigError(f"--downscale must be at least 1, got {self.downscale}")
        return cfg

    def execute(self, progress: Optional[Progress] = None) -> dict:
        """Train; returns the evaluation dict (held-out "psnr", "ssim", "train_seconds", ...)."""
        from loopnerf.data import load_capture

        folder = RunFolder(self.out)
        if self.resume:
            if not folder.has_stage1():
                raise ConfigError(f"{folder.path}: nothing to resume (no stage-1 run there)")
            info = folder.read_stage1_config()
            saved = config_from_dict(info["config"])
            # a config left at its default means "the run's own"
            cfg = (self if self.config != Stage1Config() else replace(self, config=saved)).stage1_config()
            ref = {"capture": info["capture"], "capture_options": info.get("capture_options", {})}
            wanted = {"capture": str(Path(self.capture).resolve()), "capture_options": {"downscale": self.downscale}}
            diff = [f"{k} ({ref[k]!r} -> {wanted[k]!r})" for k in ref if ref[k] != wanted[k]]
            if self.preset != saved.preset:
                diff.append(f"preset ({saved.preset!r} -> {self.preset!r})")
            diff += [d for d in changed_fields(saved, cfg) if not d.startswith("train.steps ")]
            if diff:
                raise ConfigError(
                    f"--resume continues {folder.path} as it was configured, but these options differ from its "
                    f"{folder.stage1_config_path.name}: {'; '.join(diff)}. Drop them, or start a new run (another --out)"
                )
            capture_ref = ref
        else:
            cfg = self.stage1_config()
            capture_ref = {"capture": str(Path(self.capture).resolve()), "capture_options": {"downscale": self.downscale}}
        cap = load_capture(capture_ref["capture"], **capture_ref["capture_options"])
        if not self.resume and self.background is None and cfg.model.background == make_preset(cfg.preset).model.background:
            cfg.model.background = capture_background(cap)
        trainer = Stage1Trainer(cap, cfg, folder.path, capture_ref, quiet=self.quiet)
        trainer.skip_nonfinite = self.skip_nonfinite
        if self.resume:
            trainer.resume()
        return trainer.run(progress)

    def __call__(self) -> int:
        result = self.execute()
        print(
            f"stage 1 done: held-out PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}, "
            f"{result['train_seconds']:.0f} s; weights in {RunFolder(self.out).stage1_weights}"
        )
        return 0


def train(capture: Path, out: Path = Path("runs/run"), **options) -> int:
    """`loopnerf train` from Python with the command's keyword options (see `TrainCommand`)."""
    return TrainCommand(capture=Path(capture), out=Path(out), **options)()
