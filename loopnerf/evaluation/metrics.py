"""Image and video-loop metrics (VideoLoop3D's protocol plus ground truth; DESIGN §5.4).

Inputs are numpy arrays or torch tensors with values in [0, 1]: images [H, W, C] or
[N, H, W, C], videos [T, H, W, C]; masks [H, W] (or broadcastable to the image's
leading axes) with True = pixel counts. Every function returns a Python float.

- `psnr`, `ssim`: per-image fidelity (`loopnerf.image_metrics`).
- `stderr_metric`: mean squared difference of the per-pixel temporal standard
  deviations of two videos (does the loop move as much as the reference, where it does).
- `completeness` (reference -> loop) and `coherence` (loop -> reference): mean absolute
  error between each 3D patch and its nearest neighbour (by mean squared difference,
  at the same spatial position, over time) in the other video, averaged over
  VideoLoop3D's three patch scales; the matching is `loopnerf.patches`' (the looping loss's).
  The loop is taken as played, i.e. circularly (VideoLoop3D evaluates a rendered
  clip without its wrap and measures the wrap separately with LoopQ).
- `loop_quality` (LoopQ): coherence of the seam only: the loop's last `frames - 1`
  frames followed by its first `frames - 1`, per scale.
- `seam_ratio`: mean squared change across the wrap (last -> first frame) divided by
  the mean squared change between consecutive frames inside the loop (1 = the wrap is an
  ordinary step; a hard cut is >> 1).
- `best_cyclic_phase_psnr`: PSNR of the loop against one true period of a periodic
  ground truth, at the best cyclic phase shift.
- `motion_ratio`: mean temporal standard deviation of the (moving) pixels of a video
  divided by the same of a reference video (1 = the full amplitude; a loop that blurs
  phases together or stands still scores less, a flickering one more).
- `video_completeness` / `video_coherence`: the patch errors of `completeness` /
  `coherence` for a video that is *not* a loop (no circular padding), e.g. the stage-1
  render of a still stretch against the true states.
Lower is better for STDerr, completeness, coherence, LoopQ; seam ratio should be ~1.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from loopnerf.image_metrics import as_float64 as _tensor, mask_weights as _mask_weights, psnr, ssim  # noqa: F401  (psnr, ssim: part of this module's API)

# VideoLoop3D's evaluation scales: (patch px, spatial stride, patch frames, frame stride).
PATCH_SCALES: tuple[tuple[int, int, int, int], ...] = ((5, 2, 7, 1), (11, 4, 5, 1), (17, 6, 3, 1))


def stderr_metric(loop, reference, mask=None) -> float:
    """STDerr: mean squared difference of per-pixel temporal standard deviations.

    loop [F, H, W, C], reference [T, H, W, C] (F and T may differ); standard deviations
    over time (population, per pixel and channel); mean over (masked) pixels and channels.
    """
    sl = _tensor(loop).std(dim=0, unbiased=False)
    sr = _tensor(reference).std(dim=0, unbiased=False)
    if sl.shape != sr.shape:
        raise ValueError(f"stderr_metric: frame shapes differ {tuple(sl.shape)} vs {tuple(sr.shape)}")
    err = (sl - sr) ** 2
    if mask is None:
        return float(err.mean())
    w = _mask_weights(mask, err.shape, err.device)
    return float((err * w).sum() / (w.sum() * err.shape[-1]))


def nearest_patch_error(
    source, target, *, patch: int, stride: int, frames: int, frame_stride: int = 1
) -> float:
    """Mean absolute error between each 3D patch of `source` and its nearest `target` patch.

    Both [T, H, W, C]; the nearest neighbour is searched over time at the same spatial
    position, by mean squared difference (`loopnerf.patches.match_patches`).
    """
    from loopnerf.patches import match_patches

    src, tar = _tensor(source).float(), _tensor(target).float()
    total, count = 0.0, 0
    for m in match_patches(src, tar, patch=patch, frames=frames, stride=stride, frame_stride=frame_stride):
        # a block's sum in float32 (torch's pairwise summation: ~1e-7 relative), the blocks'
        # in Python floats; `sum(dtype=torch.float64)` casts element by element, 40x slower
        # here, and was 6.5 of the demo eval's 35 s
        total += float((m.query - m.pool_matched).abs_().sum())
        count += m.query.numel()
    return total / count


def _fitting_scales(scales, videos) -> list:
    """The scales whose patches fit: at most as large as the frames and the FIRST video's length.

    (Later videos are loops, which are padded to fit any patch length.)
    """
    h, w = videos[0].shape[1:3]
    t = videos[0].shape[0]
    fit = [s for s in scales if s[0] <= min(h, w) and s[2] <= t]
    if not fit:
        raise ValueError(f"no patch scale of {list(scales)} fits videos of {t} frames and {w}x{h} px")
    return fit


def _loop_error(loop, reference, scales, loop_is_source: bool) -> float:
    """Nearest-patch MAE between the loop as played (padded circularly) and the reference."""
    from loopnerf.patches import pad_loop

    lp, ref = _tensor(loop), _tensor(reference)
    errs = []
    for p, s, f, fs in _fitting_scales(scales, [ref, lp]):
        played = pad_loop(lp, f)
        src, tar = (played, ref) if loop_is_source else (ref, played)
        errs.append(nearest_patch_error(src, tar, patch=p, stride=s, frames=f, frame_stride=fs))
    return float(np.mean(errs))


def motion_ratio(video, reference, mask=None) -> float:
    """Mean temporal std of `video` ÷ mean temporal std of `reference`, over `mask`.

    video [T1, H, W, C], reference [T2, H, W, C] (lengths may differ); std over time
    (population), per pixel and channel, averaged over the channels and the pixels where
    mask [H, W] is True (all pixels if None). Raises ValueError when the reference does
    not move there (its mean std is 0) or the mask selects nothing.
    """
    sv = _tensor(video).std(dim=0, unbiased=False).mean(-1)
    sr = _tensor(reference).std(dim=0, unbiased=False).mean(-1)
    if sv.shape != sr.shape:
        raise ValueError(f"motion_ratio: frame shapes differ {tuple(sv.shape)} vs {tuple(sr.shape)}")
    if mask is not None:
        m = _bool_mask(mask, sv.shape)
        if not bool(m.any()):
            raise ValueError("motion_ratio: the mask selects no pixel")
        sv, sr = sv[m], sr[m]
    den = float(sr.mean())
    if den <= 0:
        raise ValueError("motion_ratio: the reference does not move over the selected pixels")
    return float(sv.mean()) / den


def _bool_mask(mask, shape):
    """A bool torch tensor of `shape` [H, W] from a mask broadcastable to it."""
    import torch

    return torch.broadcast_to(torch.as_tensor(np.asarray(mask, dtype=bool)), tuple(shape))


def _video_error(video, reference, scales, video_is_source: bool) -> float:
    """Nearest-patch MAE between a (non-looping) video and the reference, both [T, H, W, C]."""
    v, ref = _tensor(video), _tensor(reference)
    errs = []
    for p, s, f, fs in _fitting_scales(scales, [ref, v]):
        if f > v.shape[0]:
            continue
        src, tar = (v, ref) if video_is_source else (ref, v)
        errs.append(nearest_patch_error(src, tar, patch=p, stride=s, frames=f, frame_stride=fs))
    if not errs:
        raise ValueError("no patch scale fits both videos")
    return float(np.mean(errs))


def video_completeness(video, reference, scales: Sequence[tuple[int, int, int, int]] = PATCH_SCALES) -> float:
    """`completeness` of a video that is not a loop (taken as is, no wrap): reference -> video."""
    return _video_error(video, reference, scales, video_is_source=False)


def video_coherence(video, reference, scales: Sequence[tuple[int, int, int, int]] = PATCH_SCALES) -> float:
    """`coherence` of a video that is not a loop (taken as is, no wrap): video -> reference."""
    return _video_error(video, reference, scales, video_is_source=True)


def completeness(loop, reference, scales: Sequence[tuple[int, int, int, int]] = PATCH_SCALES) -> float:
    """Completeness: is every reference patch somewhere in the loop? (reference -> loop nearest-patch MAE).

    loop [F, H, W, C], reference [T, H, W, C]; the loop is taken as played (endlessly:
    padded circularly with its first frames - 1 frames, so patches across the wrap
    count); averaged over the patch `scales` (patch px, stride, patch frames, frame
    stride) that fit; lower is better.
    """
    return _loop_error(loop, reference, scales, loop_is_source=False)


def coherence(loop, reference, scales: Sequence[tuple[int, int, int, int]] = PATCH_SCALES) -> float:
    """Coherence: is every patch of the loop as played found in the reference? (loop -> reference MAE).

    Shapes, circular padding and scales as `completeness`; lower is better. The wrap's
    patches are a small part of these; `loop_quality` measures them alone.
    """
    return _loop_error(loop, reference, scales, loop_is_source=True)


def loop_quality(loop, reference, scales: Sequence[tuple[int, int, int, int]] = PATCH_SCALES) -> float:
    """LoopQ: coherence of the seam only; lower is better.

    For each scale with patch length `frames`, the seam clip is the loop's last
    frames - 1 frames followed by its first frames - 1 (so every patch of the clip
    straddles the wrap) and its patches are matched against the reference.
    """
    import torch

    lp = _tensor(loop)
    ref = _tensor(reference)
    errs = []
    for p, s, f, fs in _fitting_scales(scales, [ref, lp]):
        if f < 2 or f - 1 > lp.shape[0]:
            continue
        seam = torch.cat([lp[lp.shape[0] - (f - 1):], lp[: f - 1]])
        errs.append(nearest_patch_error(seam, ref, patch=p, stride=s, frames=f, frame_stride=fs))
    if not errs:
        raise ValueError("loop_quality: no scale has patches of >= 2 frames that fit the loop")
    return float(np.mean(errs))


def seam_ratio(loop, mask=None) -> float:
    """Mean squared change across the wrap / mean squared change between consecutive frames.

    loop [F, H, W, C] with F >= 2; mask [H, W] restricts both means to those pixels.
    A loop that never changes gives 1.0 (its seam is as still as the rest).
    """
    lp = _tensor(loop)
    if lp.shape[0] < 2:
        raise ValueError("seam_ratio: the loop needs >= 2 frames")
    steps = (lp[1:] - lp[:-1]) ** 2  # [F-1, H, W, C]
    wrap = (lp[0] - lp[-1]) ** 2  # [H, W, C]
    if mask is not None:
        w = _mask_weights(mask, wrap.shape, wrap.device)
        steps, wrap = steps * w, wrap * w
    inner, seam = float(steps.mean()), float(wrap.mean())
    if inner == 0:
        return 1.0 if seam == 0 else math.inf
    return seam / inner


def best_cyclic_phase_psnr(loop, truth, mask=None, *, return_shift: bool = False):
    """PSNR of a loop against one true period, at the best cyclic phase shift.

    loop [F, H, W, C]; truth [P, H, W, C] one period of the ground truth (frame j at
    phase j / P). For every shift s in 0..F-1 (loop frames), truth frame j is compared
    with the loop at position j * F / P + s (circular, linear blend of the two nearest
    loop frames; exact frames when F == P); the MSE is pooled over all frames and
    (masked, mask [H, W]) pixels, and the best shift's PSNR is returned (with the
    shift, in loop frames, if `return_shift`).
    """
    import torch

    lp, tr = _tensor(loop), _tensor(truth)
    if lp.shape[1:] != tr.shape[1:]:
        raise ValueError(f"best_cyclic_phase_psnr: frame shapes differ {tuple(lp.shape[1:])} vs {tuple(tr.shape[1:])}")
    f, p = lp.shape[0], tr.shape[0]
    best, best_shift = -math.inf, 0
    for s in range(f):
        pos = torch.arange(p, dtype=torch.float64) * f / p + s
        lo = torch.floor(pos).long()
        frac = (pos - lo)[:, None, None, None]
        resampled = (1 - frac) * lp[lo % f] + frac * lp[(lo + 1) % f]
        value = psnr(resampled, tr, None if mask is None else torch.broadcast_to(_tensor(mask), (p,) + tuple(tr.shape[1:3])))
        if value > best:
            best, best_shift = value, s
    return (best, best_shift) if return_shift else best
