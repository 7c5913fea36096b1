"""Still segments of the camera path (`loopnerf select`): where the handheld camera rests.

Stage 2 supervises the loop with videos rendered from the stage-1 field at fixed
poses; those poses come from the parts of the capture where the camera (nearly) stood
still, so that the field saw every moment of the motion from about that viewpoint.
The pose math (deltas, thresholds, averaged poses) is `loopnerf.data.still_segments`;
this module plots the path and writes the run's segments file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tyro  # for the positional RUN argument of the CLI (the CLI loads tyro anyway)

from loopnerf.data.still_segments import (
    DEFAULT_MIN_LENGTH,
    DEFAULT_ROTATION_THRESHOLD,
    DEFAULT_TRANSLATION_THRESHOLD,
    DEFAULT_WINDOW,
    PathDeltas,
    Segment,
    find_still_segments,
    path_deltas,
)

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.run_folder import Segments


# ------------------------------------------------------------------------------ plot
def plot_segments(
    c2w: np.ndarray,
    segments: list[Segment],
    deltas: PathDeltas,
    out_png: Path,
    *,
    translation_threshold: float = DEFAULT_TRANSLATION_THRESHOLD,
    rotation_threshold: float = DEFAULT_ROTATION_THRESHOLD,
) -> Path:
    """Draw the path with its segments to `out_png`: a top view and the deltas over time.

    The top view looks down the mean camera up vector (+Y of the cameras), so it works
    whatever the world's up axis; segments are coloured, their averaged poses marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c2w = np.asarray(c2w, dtype=np.float64)
    centres = c2w[:, :3, 3]
    up = c2w[:, :3, 1].mean(0)
    up = up / (np.linalg.norm(up) + 1e-12)
    # Two axes spanning the plane perpendicular to up: the first along the path's main spread.
    flat = centres - centres.mean(0)
    flat = flat - np.outer(flat @ up, up)
    _, _, vt = np.linalg.svd(flat if len(flat) > 1 else np.eye(3), full_matrices=True)
    a1 = vt[0] - (vt[0] @ up) * up
    if np.linalg.norm(a1) < 1e-9:
        a1 = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 0, 1.0])
    a1 /= np.linalg.norm(a1)
    a2 = np.cross(up, a1)
    px, py = centres @ a1, centres @ a2

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.6]})
    ax = axes[0]
    ax.plot(px, py, "-", color="0.6", lw=1, label="camera path")
    ax.plot(px[:1], py[:1], "o", color="0.3", ms=4, label="first frame")
    colours = plt.cm.tab10(np.arange(max(len(segments), 1)) % 10)
    for i, seg in enumerate(segments):
        sl = slice(seg.start, seg.stop)
        ax.plot(px[sl], py[sl], "-", color=colours[i], lw=3, label=f"segment {i}: {seg.start}-{seg.stop - 1}")
        p = seg.pose[:3, 3]
        look = -seg.pose[:3, 2]
        ax.plot([p @ a1], [p @ a2], "x", color=colours[i], ms=9)
        scale = 0.08 * max(np.ptp(px), np.ptp(py), 1e-6)
        ax.arrow(p @ a1, p @ a2, scale * (look @ a1), scale * (look @ a2), color=colours[i], width=scale * 0.03)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("camera path, top view (down the mean camera up)")
    ax.legend(fontsize=7, loc="best")

    ax = axes[1]
    frames = np.arange(len(c2w))
    ax.plot(frames, deltas.translation / translation_threshold, color="tab:blue", label="translation / threshold")
    ax.plot(frames, deltas.rotation / rotation_threshold, color="tab:orange", label="rotation / threshold")
    ax.axhline(1.0, color="k", ls="--", lw=1, label=f"thresholds ({translation_threshold:g} of extent, {rotation_threshold:g} deg)")
    for i, seg in enumerate(segments):
        ax.axvspan(seg.start, seg.stop - 1, color=colours[i], alpha=0.2)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("frame (time order)")
    ax.set_ylabel("smoothed delta per frame / its threshold")
    ax.set_title("camera motion over time (shaded: still segments)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


# ------------------------------------------------------------------------- the stage
def select_segments(
    run: Path,
    translation_threshold: float = DEFAULT_TRANSLATION_THRESHOLD,
    rotation_threshold: float = DEFAULT_ROTATION_THRESHOLD,
    window: int = DEFAULT_WINDOW,
    min_length: int = DEFAULT_MIN_LENGTH,
) -> "Segments":
    """Find the still segments of a run's camera path; write RUN/segments.json and
    RUN/segments.png and return them (see `select` for the options)."""
    from loopnerf.run_folder import RunFolder, SegmentRecord, Segments

    folder = RunFolder(run)
    capture_path, _ = folder.capture_ref()
    capture = folder.load_capture()
    order = np.argsort(capture.times, kind="stable")
    c2w = capture.c2w[order]
    times = capture.times[order]
    deltas = path_deltas(c2w, window)
    segments = find_still_segments(
        c2w,
        translation_threshold=translation_threshold,
        rotation_threshold=rotation_threshold,
        window=window,
        min_length=min_length,
    )
    records = [
        SegmentRecord(seg.start, seg.stop, seg.pose, capture.intrinsics[int(order[(seg.start + seg.stop - 1) // 2])], times[seg.start : seg.stop])
        for seg in segments
    ]
    options = {
        "translation_threshold": translation_threshold,
        "rotation_threshold_degrees": rotation_threshold,
        "window": window,
        "min_length": min_length,
        "capture": capture_path,
        "frames": int(len(c2w)),
        "frame_order": "by capture time",
    }
    found = Segments(records, options)
    folder.write_segments(found)
    plot_segments(
        c2w, segments, deltas, folder.segments_png,
        translation_threshold=translation_threshold, rotation_threshold=rotation_threshold,
    )
    return found


# ------------------------------------------------------------------------------- CLI
def select(
    run: tyro.conf.Positional[Path],
    translation_threshold: float = DEFAULT_TRANSLATION_THRESHOLD,
    rotation_threshold: float = DEFAULT_ROTATION_THRESHOLD,
    window: int = DEFAULT_WINDOW,
    min_length: int = DEFAULT_MIN_LENGTH,
) -> int:
    """Find the still segments of a run's camera path; write RUN/segments.json and RUN/segments.png.

    Reads the capture stage 1 was fitted to (named in its config), orders all its frames
    by time, and keeps the stretches where the camera rests.

    Args:
        run: the run directory (holds stage 1's config).
        translation_threshold: largest smoothed camera-centre step per frame, as a fraction of the camera path's extent (bounding-box diagonal of the centres); unitless.
        rotation_threshold: largest smoothed rotation step per frame, in degrees (norm of the relative rotation's x-y-z Euler angles).
        window: rolling-average length for both deltas, in frames.
        min_length: shortest still segment kept, in frames.
    """
    from loopnerf.run_folder import RunFolder

    found = select_segments(run, translation_threshold, rotation_threshold, window, min_length)
    _print_summary(found, RunFolder(run).segments_path)
    return 0


def _print_summary(found, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"still segments ({path})")
    for col in ("#", "frames", "length", "time range", "position"):
        table.add_column(col)
    for i, seg in enumerate(found.segments):
        pos = ", ".join(f"{v:.3f}" for v in seg.pose[:3, 3])
        table.add_row(
            str(i), f"{seg.start}-{seg.stop - 1}", str(len(seg)),
            f"{seg.times[0]:.3f}-{seg.times[-1]:.3f}", f"({pos})",
        )
    Console().print(table)
