"""Speed of one training step of each stage, new against old, one JSON line per figure.

    .venv/bin/python benchmarks/train_step.py [--capture DIR] [--run RUN] [--steps 12] [--preset cpu]

Stage 1 (`--capture`, default the natural-motion demo capture `runs/final/capture`, else
a synthetic capture rendered at the `cpu` size): a `Stage1Trainer` of the preset in
three builds, measured interleaved in one process so a busy machine slows all alike:

* `fused`: today's default: Taichi hexplane and volume-rendering kernels, the plane
  regularizers as one fused Taichi pass into the planes' `.grad`, torch's fused Adam;
* `before`: the step as it was before this work: Taichi kernels with the hexplane
  backward on per-thread private buffers, the points inside and outside the dynamic
  region in two launches (`field.ONE_LAUNCH` off), scalar kernel builds, Taichi's general
  launch path, the linear decoder's logits under plain autograd, regularizers under
  autograd, the for-loop Adam;
* `scalar`: `fused` with every kernel built scalar (`kernels.runtime.SIMD` off: Taichi's
  default codegen, one scalar operation per channel), to time the SIMD builds alone;
* `two_launches`: `fused` with the dynamic region's inside and outside evaluated in
  two kernel launches (`field.ONE_LAUNCH` off), to time that change alone;
* `general_launch`: `fused` with every Taichi kernel launched through Taichi's general
  Python path instead of its cached launch plan (`kernels.runtime.FAST_LAUNCH` off:
  ~75 us a launch and 30-45 us an argument, 22 launches a step), to time that alone;
* `twins`: the same step built from the plain-PyTorch twins (kernel backend `torch`,
  the decoder's logits, regularizers under autograd, the for-loop Adam).

Each figure is the median over `--steps` steps after a warm-up; `parts` splits a step
into the render forward + backward (proposals, field, decoder, volume rendering,
sampling losses), the plane regularizers and the optimizer.

Distillation (`--run`, a run with a stage 1 and segments, default `runs/final/run`):
a `Distiller` step (`loop` method, native crops of the preset) `fused` (the loop field
at all F phases in one kernel with the linear decoder, `render_phases`; the fused
regularizers and Adam) vs `before` (every ray repeated per phase through
`render_samples`, regularizers under autograd, the for-loop Adam, the hexplane's
private-buffer backward, scalar kernel builds, Taichi's general launch path, the
decoder's logits under plain autograd).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _capture(path: Path | None):
    from loopnerf.data import load_capture

    if path is not None:
        return load_capture(path)
    default = REPO / "runs" / "final" / "capture"
    if default.is_dir():
        return load_capture(default)
    from loopnerf.synth.command import SynthConfig, make_synthetic_capture

    cap, _ = make_synthetic_capture(SynthConfig())
    return cap


def _stage1_trainer(cap, preset: str, build: str):
    from loopnerf.model.config import preset as make_preset
    from loopnerf.model.train import Stage1Trainer, capture_background

    cfg = make_preset(preset)
    cfg.model.background = capture_background(cap)
    if build == "twins":
        cfg.model.kernel_backend = "torch"
    tr = Stage1Trainer(cap, cfg, Path(tempfile.mkdtemp()), {}, quiet=True)
    if build in ("before", "twins"):
        tr.fused_regularizers = False
        tr.optimizer = torch.optim.Adam(tr.model.parameters(), lr=cfg.train.lr, eps=1e-15)
    tr.step = cfg.train.proposal_anneal_steps  # past the warm-up and the anneal: steady state
    return tr


def _parts(tr) -> dict:
    """Seconds of the render forward+backward, the regularizers and the optimizer of one step."""
    tc = tr.cfg.train
    t0 = time.perf_counter()
    batch = tr.batcher.sample(tc.rays, tr.generator)
    out = tr.model(batch["origins"], batch["dirs"], batch["times"], step=tr.step, anneal_steps=tc.proposal_anneal_steps, training=True, generator=tr.generator)
    loss = (out["rgb"] - batch["rgb"]).square().mean() + sum(tr.model.sampling_losses(out, tc.losses).values())
    tr.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t1 = time.perf_counter()
    if tr.fused_regularizers:
        tr.model.add_regularizer_grads(tc.losses)
    else:
        sum(tr.model.regularizers(tc.losses).values()).backward()
    t2 = time.perf_counter()
    tr.optimizer.step()
    t3 = time.perf_counter()
    return {"render_ms": 1e3 * (t1 - t0), "regularizers_ms": 1e3 * (t2 - t1), "optimizer_ms": 1e3 * (t3 - t2)}


STAGE1_BUILDS = ("fused", "scalar", "two_launches", "general_launch", "before", "twins")


def bench_stage1(cap, preset: str, steps: int, builds=STAGE1_BUILDS) -> None:
    builds = [b for b in STAGE1_BUILDS if b in builds]
    if "fused" not in builds:
        builds.insert(0, "fused")  # every ratio is against it
    trainers = {b: _stage1_trainer(cap, preset, b) for b in builds}
    from loopnerf.fields import decoders, field
    from loopnerf.kernels import hexplane, runtime

    def use(b: str) -> None:
        hexplane.PLANE_TASK_BACKWARD = b in ("fused", "scalar", "two_launches", "general_launch")
        field.ONE_LAUNCH = b in ("fused", "scalar", "general_launch")
        runtime.SIMD = b in ("fused", "two_launches", "general_launch")
        runtime.FAST_LAUNCH = b not in ("general_launch", "before")
        decoders.FUSED_LOGITS = b not in ("before", "twins")

    for b, tr in trainers.items():  # warm-up: compile each build's kernels, touch Adam state
        use(b)
        for _ in range(2):
            tr.train_step()
    times = {b: [] for b in builds}
    parts = {b: [] for b in builds}
    for _ in range(steps):
        for b, tr in trainers.items():
            use(b)
            t0 = time.perf_counter()
            tr.train_step()
            times[b].append(time.perf_counter() - t0)
            parts[b].append(_parts(tr))
    hexplane.PLANE_TASK_BACKWARD = field.ONE_LAUNCH = runtime.SIMD = runtime.FAST_LAUNCH = decoders.FUSED_LOGITS = True
    rays = trainers["fused"].cfg.train.rays
    med = {b: statistics.median(v) for b, v in times.items()}
    for b in builds:
        split = {k: round(statistics.median(p[k] for p in parts[b]), 1) for k in parts[b][0]}
        print(json.dumps({"benchmark": "stage1_step", "preset": preset, "build": b, "ms_per_step": round(1e3 * med[b], 1),
                          "rays_per_s": round(rays / med[b]), **split, "threads": torch.get_num_threads()}), flush=True)
    ratios = {f"fused_vs_{b}": round(med[b] / med["fused"], 2) for b in builds if b != "fused"}
    print(json.dumps({"benchmark": "stage1_step_ratio", "preset": preset, **ratios}), flush=True)


def _render_repeated(self, o, d, smp, frames: int) -> torch.Tensor:
    """The distillation's render as it was: every ray repeated at each phase, the loop
    field evaluated as separate 4D points, features through the decoder in torch."""
    r = o.shape[0]
    phases = (torch.arange(frames, dtype=torch.float32) / frames).repeat_interleave(r)
    out = self.model.render_samples(o.repeat(frames, 1), d.repeat(frames, 1), phases, smp["t_edges"].repeat(frames, 1), smp["hit"].repeat(frames))
    return out["rgb"].view(frames, r, 3)


def bench_distill(run: Path, preset: str, steps: int) -> None:
    from loopnerf.distill.train import Distiller, distill_preset

    cfg = distill_preset(preset)
    builds = {}
    for b in ("fused", "before"):
        d = Distiller(run, cfg, "loop", quiet=True)  # train_step writes nothing into the run
        if b == "before":
            d.fused_regularizers = False
            d.optimizer = torch.optim.Adam(d.model.loop_parameters(), lr=cfg.lr, eps=1e-15)
            d.render_loop_crop = _render_repeated.__get__(d)
        d.step = cfg.halve_every * cfg.coarse_levels  # native crops: the steady state
        builds[b] = d
    from loopnerf.fields import decoders
    from loopnerf.kernels import hexplane, runtime

    for b, d in builds.items():
        hexplane.PLANE_TASK_BACKWARD = runtime.SIMD = runtime.FAST_LAUNCH = decoders.FUSED_LOGITS = b == "fused"
        d.train_step()
    times = {b: [] for b in builds}
    for _ in range(steps):
        for b, d in builds.items():
            hexplane.PLANE_TASK_BACKWARD = runtime.SIMD = runtime.FAST_LAUNCH = decoders.FUSED_LOGITS = b == "fused"
            t0 = time.perf_counter()
            d.train_step()
            times[b].append(time.perf_counter() - t0)
    hexplane.PLANE_TASK_BACKWARD = runtime.SIMD = runtime.FAST_LAUNCH = decoders.FUSED_LOGITS = True
    med = {b: statistics.median(v) for b, v in times.items()}
    for b in builds:
        print(json.dumps({"benchmark": "distill_step", "preset": preset, "build": b, "ms_per_step": round(1e3 * med[b], 1)}), flush=True)
    print(json.dumps({"benchmark": "distill_step_ratio", "preset": preset, "fused_vs_before": round(med["before"] / med["fused"], 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", type=Path, default=None)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "final" / "run")
    parser.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", nargs="*", default=[], choices=["stage1", "distill"])
    parser.add_argument("--builds", nargs="*", default=list(STAGE1_BUILDS), choices=list(STAGE1_BUILDS),
                        help="stage-1 builds to time (fused always; the paper preset holds ~2.6 GB of planes and Adam state per build)")
    args = parser.parse_args()
    if "stage1" not in args.skip:
        bench_stage1(_capture(args.capture), args.preset, args.steps, args.builds)
    from loopnerf.run_folder import RunFolder

    if "distill" not in args.skip and RunFolder(args.run).has_segments():
        bench_distill(args.run, args.preset, args.steps)


if __name__ == "__main__":
    main()
