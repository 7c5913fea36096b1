"""Still segments of a camera path: where the handheld camera rests (pose math only).

Stage 2 supervises the loop with videos rendered from the stage-1 field at fixed
poses; those poses come from the parts of the capture where the camera (nearly) stood
still, so that the field saw every moment of the motion from about that viewpoint.

Per frame (report §3.2; DESIGN §5.1):
- translation delta: distance between consecutive camera centres divided by the
  camera path's extent (the diagonal of the centres' bounding box), so the threshold
  does not depend on the scene's units;
- rotation delta: the relative rotation between consecutive cameras as x-y-z Euler
  angles, in DEGREES; the delta is the Euclidean norm of the three angles (for small
  rotations, the rotation angle). Degrees, because the report's default 0.2 only makes
  sense in degrees: 0.2 rad (11.5 deg) per frame would call a fast pan "still";
- a frame's delta is the mean of the steps into and out of it; both deltas are then
  smoothed by a centred rolling average of `window` frames;
- frames with both smoothed deltas <= their thresholds are still; runs of at least
  `min_length` still frames are the segments.

Each segment gets an averaged pose: the mean camera centre, and the mean rotation
matrix re-orthonormalised by QR with signs fixed so it is a proper rotation.

Poses are camera-to-world 4x4, OpenGL axes (camera looks down -Z, +Y up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loopnerf.errors import ConfigError, SelectionError

DEFAULT_TRANSLATION_THRESHOLD = 0.02
DEFAULT_ROTATION_THRESHOLD = 0.2  # degrees per frame
DEFAULT_WINDOW = 5
DEFAULT_MIN_LENGTH = 50


@dataclass
class Segment:
    """A still stretch of the camera path.

    Attributes:
        start: first frame index; stop: one past the last frame index (exclusive).
        pose: [4, 4] float64 averaged camera-to-world pose of the stretch.
    """

    start: int
    stop: int
    pose: np.ndarray

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class PathDeltas:
    """Per-frame camera motion, smoothed.

    Attributes:
        translation: [N] centre step / path extent (unitless), rolling average.
        rotation: [N] Euler-angle step norm in degrees, rolling average.
    """

    translation: np.ndarray
    rotation: np.ndarray


# ----------------------------------------------------------------------------- poses
def euler_xyz_degrees(r: np.ndarray) -> np.ndarray:
    """[..., 3] x-y-z Euler angles (degrees) of rotations r [..., 3, 3], with R = Rz Ry Rx."""
    sy = np.clip(-r[..., 2, 0], -1.0, 1.0)
    ay = np.arcsin(sy)
    ax = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    az = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.degrees(np.stack([ax, ay, az], axis=-1))


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """[4, 4] the average of camera-to-world poses c2w [N, 4, 4].

    Position: the mean camera centre. Rotation: the element-wise mean of the rotation
    matrices, re-orthonormalised by QR; the signs of Q's columns are chosen so R's
    diagonal is positive (Q is then the rotation closest in Gram-Schmidt order to the
    mean's columns) and, should the mean be reflected (poses spread over > 90 deg),
    the last column is flipped so the result is a proper rotation (det = +1).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise ValueError(f"c2w must be [N, 4, 4] with N >= 1, got {c2w.shape}")
    mean_rot = c2w[:, :3, :3].mean(axis=0)
    q, r = np.linalg.qr(mean_rot)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs[None, :]
    if np.linalg.det(q) < 0:
        q[:, 2] *= -1.0
    out = np.eye(4)
    out[:3, :3] = q
    out[:3, 3] = c2w[:, :3, 3].mean(axis=0)
    return out


# ---------------------------------------------------------------------------- deltas
def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """[N] centred rolling average of x [N] over `window` frames (fewer at the ends)."""
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or len(x) == 0:
        return x.copy()
    half_lo = (window - 1) // 2
    half_hi = window - 1 - half_lo
    csum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(len(x))
    lo = np.clip(idx - half_lo, 0, len(x))
    hi = np.clip(idx + half_hi + 1, 0, len(x))
    return (csum[hi] - csum[lo]) / (hi - lo)


def path_deltas(c2w: np.ndarray, window: int = DEFAULT_WINDOW) -> PathDeltas:
    """Smoothed per-frame translation and rotation deltas of a camera path c2w [N, 4, 4].

    See the module docstring for the definitions and units.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    n = len(c2w)
    if n < 2:
        return PathDeltas(np.zeros(n), np.zeros(n))
    centres = c2w[:, :3, 3]
    extent = float(np.linalg.norm(centres.max(0) - centres.min(0)))
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    trans_step = steps / extent if extent > 0 else np.zeros_like(steps)
    rot = c2w[:, :3, :3]
    rel = np.einsum("nji,njk->nik", rot[:-1], rot[1:])  # R_i^T R_{i+1}
    rot_step = np.linalg.norm(euler_xyz_degrees(rel), axis=-1)

    def per_frame(step: np.ndarray) -> np.ndarray:
        # Frame i's motion: the mean of the steps into (i-1 -> i) and out of (i -> i+1) it.
        into = np.concatenate([[step[0]], step])
        out = np.concatenate([step, [step[-1]]])
        return 0.5 * (into + out)

    return PathDeltas(
        translation=rolling_mean(per_frame(trans_step), window),
        rotation=rolling_mean(per_frame(rot_step), window),
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)] of the runs of True in a bool array (stop exclusive)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.where(edges == 1)[0].tolist(), np.where(edges == -1)[0].tolist()))


def _sliding_max(x: np.ndarray, length: int) -> np.ndarray:
    """[N - length + 1] max of x over every window of `length` consecutive entries."""
    from numpy.lib.stride_tricks import sliding_window_view

    return sliding_window_view(x, length).max(axis=1)


def _round_up(value: float, digits: int = 3) -> float:
    """`value` rounded UP to `digits` significant digits (so the suggestion still works)."""
    if value <= 0:
        return 0.0
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.ceil(value * scale - 1e-9) / scale


def _no_segment_message(
    deltas: PathDeltas, translation_threshold: float, rotation_threshold: float, min_length: int
) -> str:
    """The error text: which single option change (and to what) would find a segment."""
    n = len(deltas.translation)
    options = []  # (relative change, text)
    if min_length <= n:
        t_ok = deltas.rotation <= rotation_threshold
        r_ok = deltas.translation <= translation_threshold
        # Smallest translation threshold: over windows of min_length frames whose
        # rotation is all under its threshold, the smallest window maximum.
        win_t = _sliding_max(np.where(t_ok, deltas.translation, np.inf), min_length)
        if np.isfinite(win_t.min()):
            need = _round_up(float(win_t.min()))
            options.append((need / translation_threshold, f"--translation-threshold {need:g} (now {translation_threshold:g})"))
        win_r = _sliding_max(np.where(r_ok, deltas.rotation, np.inf), min_length)
        if np.isfinite(win_r.min()):
            need = _round_up(float(win_r.min()))
            options.append((need / rotation_threshold, f"--rotation-threshold {need:g} degrees (now {rotation_threshold:g})"))
    still = (deltas.translation <= translation_threshold) & (deltas.rotation <= rotation_threshold)
    longest = max((b - a for a, b in _runs(still)), default=0)
    if longest > 0:
        options.append((min_length / longest, f"--min-length {longest} (now {min_length})"))
    head = (
        f"no still segment of >= {min_length} frames in the {n}-frame camera path "
        f"(translation threshold {translation_threshold:g} of the path extent, rotation threshold "
        f"{rotation_threshold:g} degrees per frame; longest still run: {longest} frames)"
    )
    if not options:
        return head + "; no single option change finds one: the camera path has no still part"
    options.sort(key=lambda o: o[0])
    text = head + f"; the smallest change that finds one: {options[0][1]}"
    if len(options) > 1:
        text += "; or: " + "; or: ".join(o[1] for o in options[1:])
    return text


def find_still_segments(
    c2w: np.ndarray,
    *,
    translation_threshold: float = DEFAULT_TRANSLATION_THRESHOLD,
    rotation_threshold: float = DEFAULT_ROTATION_THRESHOLD,
    window: int = DEFAULT_WINDOW,
    min_length: int = DEFAULT_MIN_LENGTH,
) -> list[Segment]:
    """The still stretches of a camera path.

    Args:
        c2w: [N, 4, 4] camera-to-world poses, ordered by time.
        translation_threshold: largest smoothed centre step per frame, as a fraction of
            the path extent (the diagonal of the camera centres' bounding box). Report: 0.02.
        rotation_threshold: largest smoothed rotation step per frame, in degrees (norm of
            the relative rotation's x-y-z Euler angles). Report: 0.2.
        window: rolling-average length in frames (1 = no smoothing).
        min_length: shortest segment kept, in frames. Report: 50-60.

    Returns:
        list of `Segment` (start, stop exclusive, averaged pose), in path order.

    Raises:
        SelectionError: no segment; the message names the smallest single change of a
            threshold (and its value) or of `min_length` that would find one.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"c2w must be [N, 4, 4], got {c2w.shape}")
    if min_length < 1 or window < 1:
        raise ConfigError(f"min_length and window must be >= 1 (got {min_length}, {window})")
    deltas = path_deltas(c2w, window)
    still = (deltas.translation <= translation_threshold) & (deltas.rotation <= rotation_threshold)
    segments = [
        Segment(a, b, average_pose(c2w[a:b])) for a, b in _runs(still) if b - a >= min_length
    ]
    if not segments:
        raise SelectionError(_no_segment_message(deltas, translation_threshold, rotation_threshold, min_length))
    return segments
