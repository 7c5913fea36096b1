"""The looping loss alone on real footage: optimise a free 24-frame video against tree.avi.

The pixels of an F-frame video are the parameters; `looping_loss` pulls them towards a
loop whose every 3D patch (seam included) appears in the reference: frames 0-330 of
OpenCV's handheld-still `tree.avi` (a hand enters at ~340), downscaled by area
averaging. The baseline is what one gets without the method: simply cutting the first
F frames, which plays with a jump at its wrap.

Prints one JSON line per loop (and one with the settings): seam ratio (wrap change /
ordinary frame change; ~1 is seamless), completeness, coherence and LoopQ (VideoLoop3D's
nearest-patch errors, lower is better), the motion ratio (mean temporal std of the loop ÷
the reference's, over all pixels and over the moving ones, whose std in the reference is
at least 0.02: 1 = the full amplitude, a loop that blurs or stands still scores less),
plus time. The loss settings default to the `cpu` distillation preset's
(`loopnerf.distill.train.distill_preset("cpu").loss`).

    .venv/bin/python benchmarks/looping_loss_tree.py [--steps 300] [--size 80x60]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from loopnerf.distill import looping_loss
from loopnerf.distill.train import distill_preset
from loopnerf.evaluation.metrics import coherence, completeness, loop_quality, motion_ratio, seam_ratio, stderr_metric

MOVING_STD = 0.02  # a reference pixel moves when its temporal std (max over channels) is at least this

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT.parent / "shared" / "data" / "tree.avi"


def load_tree(first: int, last: int, width: int, height: int) -> np.ndarray:
    """[T, height, width, 3] float32 in [0, 1]: frames first..last of tree.avi, area-downscaled."""
    import imageio.v3 as iio

    frames = []
    for i, frame in enumerate(iio.imiter(TREE, plugin="pyav") if _has_pyav() else iio.imiter(TREE)):
        if i > last:
            break
        if i >= first:
            frames.append(frame[..., :3])
    video = torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    video = torch.nn.functional.interpolate(video, size=(height, width), mode="area")
    return video.permute(0, 2, 3, 1).contiguous().numpy()


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401

        return True
    except ImportError:
        return False


def measure(name: str, loop: np.ndarray, reference: np.ndarray, extra: dict) -> dict:
    t0 = time.perf_counter()
    row = {
        "loop": name,
        "frames": int(loop.shape[0]),
        "seam_ratio": round(seam_ratio(loop), 4),
        "completeness": round(completeness(loop, reference), 5),
        "coherence": round(coherence(loop, reference), 5),
        "loop_quality": round(loop_quality(loop, reference), 5),
        "stderr": round(stderr_metric(loop, reference), 6),
        "motion_ratio": round(motion_ratio(loop, reference), 4),
        "motion_ratio_moving": round(motion_ratio(loop, reference, mask=reference.std(0).max(-1) >= MOVING_STD), 4),
        **extra,
    }
    row["metrics_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(row), flush=True)
    return row


def optimise(reference: torch.Tensor, init: torch.Tensor, *, steps: int, gamma: float, alpha, patch: int,
             stride: int, frames: int, wrap: str = "append") -> tuple[np.ndarray, list]:
    """Gradient descent on the pixels, clamped to [0, 1], against the whole reference.

    The loss is mean((pad(x) - target)^2) over N numbers with the target fixed, so plain
    SGD with learning rate gamma * N / 2 moves each pixel the fraction `gamma` of the way
    to its (overlap-averaged, seam-wrapped) nearest-neighbour target: VideoLoop3D's
    patch-matching fixed point. (Adam is a poor fit here: it moves every pixel by about
    its learning rate whatever the gradient, which adds noise to a loop that is already
    right almost everywhere.)
    """
    x = init.clone().requires_grad_()
    n = (init.shape[0] + frames - 1) * init[0].numel()
    opt = torch.optim.SGD([x], lr=gamma * n / 2)
    history = []
    for step in range(steps):
        opt.zero_grad()
        loss = looping_loss(x, reference, patch=patch, frames=frames, stride=stride, alpha=alpha, wrap=wrap)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        if step % 10 == 0 or step == steps - 1:
            history.append((step, float(f"{loss.item():.3g}")))
    return x.detach().numpy(), history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24, help="loop length F")
    ap.add_argument("--size", default="80x60", help="working resolution WxH")
    ap.add_argument("--last", type=int, default=330, help="last reference frame (a hand enters at ~340)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--gamma", type=float, default=0.5, help="fraction of the way to the target per step")
    cpu = distill_preset("cpu").loss
    ap.add_argument("--patch", type=int, default=cpu.patch, help="patch side in pixels (cpu preset's)")
    ap.add_argument("--stride", type=int, default=cpu.stride)
    ap.add_argument("--patch-frames", type=int, default=cpu.frames)
    ap.add_argument("--alpha", type=float, default=cpu.alpha, help="completeness normalisation (cpu preset's; "
                    "a negative value turns it off)")
    ap.add_argument("--wrap", choices=["append", "both"], default=cpu.wrap, help="circular padding of the loop (cpu preset's)")
    ap.add_argument("--init", choices=["first", "mean", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.alpha is not None and args.alpha < 0:
        args.alpha = None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not TREE.is_file():
        print(json.dumps({"error": f"{TREE} not found"}))
        return 1
    w, h = (int(v) for v in args.size.split("x"))
    t0 = time.perf_counter()
    reference_np = load_tree(0, args.last, w, h)
    reference = torch.from_numpy(reference_np)
    settings = {k: v for k, v in vars(args).items()}
    settings.update(reference_frames=int(reference.shape[0]), load_s=round(time.perf_counter() - t0, 1),
                    torch_threads=torch.get_num_threads())
    print(json.dumps({"settings": settings}), flush=True)

    f = args.frames
    cut = reference_np[:f]
    measure("cut_first_frames", cut, reference_np, {})
    inits = {"first": reference[:f].clone(), "mean": reference.mean(0, keepdim=True).repeat(f, 1, 1, 1)}
    chosen = ["first", "mean"] if args.init == "both" else [args.init]
    for name in chosen:
        init = inits[name]
        if name == "mean":
            # From the mean frame alone nothing tells the frames apart; a little noise does.
            init = (init + 0.02 * torch.randn(init.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
        t0 = time.perf_counter()
        loop, history = optimise(reference, init, steps=args.steps, gamma=args.gamma, alpha=args.alpha,
                                 patch=args.patch, stride=args.stride, frames=args.patch_frames, wrap=args.wrap)
        measure(f"optimised_from_{name}", loop, reference_np,
                {"optimise_s": round(time.perf_counter() - t0, 1), "loss_history": history})
    return 0


if __name__ == "__main__":
    sys.exit(main())
