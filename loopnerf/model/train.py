"""Stage 1: fit the dynamic k-Planes field to a capture (`loopnerf train`).

Run directory layout (`RUN/stage1/`): `config.json` (the full config plus the
capture's path and load options), `ckpt.safetensors` (weights + Adam + RNG state,
written atomically every `checkpoint_every` steps), `model.safetensors` (final
weights), `eval.json` and `eval.png` (held-out ground truth over render), `log.jsonl`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tyro.conf import Positional

from loopnerf.errors import ConfigError, TrainingError
from loopnerf.model.checkpoint import finished_or_latest, load_checkpoint, save_checkpoint
from loopnerf.model.config import Stage1Config, config_from_dict, config_to_dict, preset as make_preset, resolve_time_resolution, save_json_atomic
from loopnerf.model.kplanes_model import KPlanesModel
from loopnerf.model.ray_batch import RayBatcher
from loopnerf.model.render_image import render_image


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
        self.capture = capture
        self.cfg = cfg
        self.dir = Path(run_dir) / "stage1"
        self.quiet = quiet
        self.capture_ref = capture_ref or {}
        resolve_time_resolution(cfg, len(np.unique(capture.times)))
        torch.manual_seed(cfg.train.seed)
        box = capture.scene_box()
        self.model = KPlanesModel(cfg.model, box, seed=cfg.train.seed)
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, eps=1e-15)
        self.batcher = RayBatcher(capture, capture.train_idx)
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
        save_checkpoint(self.dir / "ckpt.safetensors", self.model, self.optimizer, self.generator, meta)
        if final:
            save_checkpoint(self.dir / "model.safetensors", self.model, None, None, meta)

    def resume(self) -> None:
        meta = load_checkpoint(self.dir / "ckpt.safetensors", self.model, self.optimizer, self.generator)
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
        terms.update(self.model.regularizers(tc.losses))
        loss = sum(terms.values())
        return loss, terms

    def train_step(self) -> dict:
        tc = self.cfg.train
        for g in self.optimizer.param_groups:
            g["lr"] = tc.lr * lr_factor(self.step, tc.warmup_steps, tc.steps)
        batch = self.batcher.sample(tc.rays, self.generator)
        loss, terms = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            if not self.skip_nonfinite:
                bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v)) or "loss"
                raise TrainingError(
                    f"non-finite loss at step {self.step} (in: {bad}); the last good checkpoint is "
                    f"{self.dir / 'ckpt.safetensors'}. Lower the learning rate, or pass --skip-nonfinite "
                    f"to skip such steps"
                )
            self.skipped += 1
            self.step += 1
            return {"loss": float("nan"), "psnr": float("nan"), "skipped": True}
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach()), "psnr": psnr_of(float(terms["mse"].detach()))}

    # -------------------------------------------------------------- eval
    def evaluate(self, frames: Optional[int] = None, write: bool = True) -> dict:
        """Render held-out frames; PSNR/SSIM per frame and mean; eval.json + eval.png."""
        from loopnerf.evaluation.metrics import psnr, ssim

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
            save_json_atomic(self.dir / "eval.json", result)
            import imageio.v3 as iio

            k = min(len(gts), 8)
            strip = np.concatenate([np.concatenate(gts[:k], axis=1), np.concatenate(renders[:k], axis=1)], axis=0)
            iio.imwrite(self.dir / "eval.png", (np.clip(strip, 0, 1) * 255).astype(np.uint8))
        return result

    # --------------------------------------------------------------- run
    def run(self) -> dict:
        tc = self.cfg.train
        self.dir.mkdir(parents=True, exist_ok=True)
        save_json_atomic(self.dir / "config.json", self.config_dict())
        log = open(self.dir / "log.jsonl", "a", buffering=1)
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cols = [TextColumn("stage 1"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        t0 = time.perf_counter()
        last = {"loss": float("nan"), "psnr": float("nan")}
        with Progress(*cols, disable=self.quiet, transient=False) as bar:
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
        result.update(train_seconds=wall, skipped_steps=self.skipped)
        save_json_atomic(self.dir / "eval.json", result)
        return result


def capture_background(cap) -> tuple[float, float, float]:
    """The colour behind a capture's scene: what its loader or writer recorded, black for
    the D-NeRF npz (composited on black), else white."""
    meta = cap.meta or {}
    bg = meta.get("background") or meta.get("extra", {}).get("loopnerf_synth", {}).get("background")
    if bg is None and meta.get("format") == "dnerf_npz":
        bg = (0.0, 0.0, 0.0)
    return tuple(float(c) for c in (bg if bg is not None else (1.0, 1.0, 1.0)))


def load_stage1(run: Path):
    """(model, stage-1 config dict) of a finished or checkpointed stage-1 run."""
    d = Path(run) / "stage1"
    if not (d / "config.json").is_file():
        raise ConfigError(f"{run}: no stage-1 run there (missing stage1/config.json); run `loopnerf train` first")
    info = json.loads((d / "config.json").read_text())
    cfg = config_from_dict(info["config"])
    model = KPlanesModel(cfg.model, np.asarray(info["box"]))
    ck = finished_or_latest(d)
    load_checkpoint(ck, model)
    model.eval()
    return model, info


def train(
    capture: Positional[Path],
    out: Path = Path("runs/run"),
    preset: str = "cpu",
    steps: Optional[int] = None,
    rays: Optional[int] = None,
    decoder: Optional[str] = None,
    time_resolution: Optional[int] = None,
    kernel: Optional[str] = None,
    background: Optional[tuple[float, float, float]] = None,
    downscale: int = 1,
    resume: bool = False,
    skip_nonfinite: bool = False,
    seed: int = 0,
    quiet: bool = False,
) -> int:
    """Fit a dynamic k-Planes field to CAPTURE (stage 1), writing OUT/stage1/.

    Args:
        capture: a capture: nerfstudio folder / transforms.json, D-NeRF folder, D-NeRF .npz,
            or LLFF folder (poses_bounds.npy + videos).
        out: run directory (created); everything a run makes goes there.
        preset: 'tiny' (seconds, for tests), 'cpu' (default; ~10 min on 2 cores), 'paper' (GPU).
        steps: override the preset's number of optimisation steps.
        rays: override the rays per step.
        decoder: override the decoder, 'linear' (bakeable, fast) or 'mlp' (hybrid).
        time_resolution: time samples of the space-time planes (default: one per frame, which
            a video with fast repeating motion needs; K-Planes used 25 for D-NeRF's 50
            frames, where every frame is a new viewpoint).
        kernel: 'taichi' (fast kernels, default) or 'torch' (plain reference twins).
        background: colour behind the scene, RGB in [0, 1] (default white; D-NeRF npz: black).
        downscale: integer image downscale factor applied on load.
        resume: continue from OUT/stage1/ckpt.safetensors with the same step, optimizer and RNG state.
        skip_nonfinite: skip (and count) steps whose loss is NaN/Inf instead of stopping.
        seed: random seed (initialisation and ray sampling).
        quiet: no progress bar.
    """
    from loopnerf.data import load_capture

    run_dir = Path(out)
    cfg_path = run_dir / "stage1" / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no stage1/config.json)")
        info = json.loads(cfg_path.read_text())
        cfg = config_from_dict(info["config"])
        if steps is not None:
            cfg.train.steps = steps
        capture_ref = {"capture": info["capture"], "capture_options": info.get("capture_options", {})}
    else:
        cfg = make_preset(preset)
        if steps is not None:
            cfg.train.steps = steps
        if rays is not None:
            cfg.train.rays = rays
        if decoder is not None:
            cfg.model.field = replace(cfg.model.field, decoder=decoder)
        if time_resolution is not None:
            if time_resolution < 2:
                raise ConfigError(f"--time-resolution must be at least 2, got {time_resolution}")
            f = cfg.model.field
            cfg.model.field = replace(f, resolution=(*f.resolution[:3], time_resolution))
            cfg.model.proposals = tuple(replace(p, resolution=(*p.resolution[:3], time_resolution)) for p in cfg.model.proposals)
        if kernel is not None:
            cfg.model.kernel_backend = kernel
        if background is not None:
            cfg.model.background = tuple(float(c) for c in background)
        cfg.train.seed = seed
        capture_ref = {"capture": str(Path(capture).resolve()), "capture_options": {"downscale": downscale}}
    cap = load_capture(capture_ref["capture"], **capture_ref["capture_options"])
    if not resume and background is None:
        cfg.model.background = capture_background(cap)
    trainer = Stage1Trainer(cap, cfg, run_dir, capture_ref, quiet=quiet)
    trainer.skip_nonfinite = skip_nonfinite
    if resume:
        trainer.resume()
    result = trainer.run()
    print(
        f"stage 1 done: held-out PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}, "
        f"{result['train_seconds']:.0f} s; weights in {trainer.dir / 'model.safetensors'}"
    )
    return 0
