"""The summary of a processed video: figures (JSON) and a top view of the camera path."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_camera_path(
    path: Path, c2w: np.ndarray, times: np.ndarray, points: np.ndarray, title: str, box=None
) -> Path:
    """Top view (looking down -Y, the normalised world's up) of the registered cameras.

    Left: the whole scene, sparse points in grey, the scene box (dashed), the look-at
    point (origin) as a cross and the cameras. Right: the camera path alone, zoomed,
    centres coloured by time with short arrows along each viewing direction (a phone
    clip's path is often tiny next to the scene).

    Args:
        c2w: [N, 4, 4] camera-to-world, OpenGL axes, normalised world.
        times: [N] capture time in [0, 1] of each camera.
        points: [P, 3] sparse points (only those within the view are drawn).
        box: optional [2, 3] scene box.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = c2w[:, :3, 3]
    fwd = -c2w[:, :3, 2]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), dpi=100)
    # overview
    ax = axes[0]
    reach = max(float(np.abs(centres[:, [0, 2]]).max()), 1e-3) * 1.3
    if len(points):
        near = points[(np.abs(points[:, 0]) < reach) & (np.abs(points[:, 2]) < reach)]
        ax.scatter(near[:, 0], near[:, 2], s=1, c="0.65", label="sparse points")
    if box is not None:
        (x0, _, z0), (x1, _, z1) = np.asarray(box)
        ax.plot([x0, x1, x1, x0, x0], [z0, z0, z1, z1, z0], "--", c="tab:blue", lw=1, label="scene box")
    ax.scatter(centres[:, 0], centres[:, 2], c=times, cmap="viridis", s=10, vmin=0, vmax=1, zorder=3)
    ax.plot([0], [0], "k+", ms=12, mew=2, label="look-at point")
    ax.set_xlim(-reach, reach)
    ax.set_ylim(reach, -reach)  # z grows down the page: the default view (-Z) points up the page
    ax.set_title("scene (top view)", fontsize=9)
    # zoom on the path
    ax2 = axes[1]
    lo, hi = centres[:, [0, 2]].min(0), centres[:, [0, 2]].max(0)
    mid, half = (lo + hi) / 2, max(float((hi - lo).max()) * 0.6, 1e-3)
    ax2.plot(centres[:, 0], centres[:, 2], "-", c="0.5", lw=0.8)
    sc = ax2.scatter(centres[:, 0], centres[:, 2], c=times, cmap="viridis", s=22, zorder=3, vmin=0, vmax=1)
    arrow = 0.25 * half
    ax2.quiver(centres[:, 0], centres[:, 2], fwd[:, 0] * arrow, fwd[:, 2] * arrow, angles="xy",
               scale_units="xy", scale=1, width=0.004, color="tab:red", zorder=2)
    ax2.set_xlim(mid[0] - half, mid[0] + half)
    ax2.set_ylim(mid[1] + half, mid[1] - half)
    ax2.set_title("camera path (zoomed), arrows = viewing direction", fontsize=9)
    for a in axes:
        a.set_aspect("equal")
        a.set_xlabel("x (world units)")
        a.set_ylabel("z (world units)")
    axes[0].legend(loc="upper right", fontsize=7)
    fig.colorbar(sc, ax=ax2, fraction=0.046, pad=0.04, label="time")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MiB), from getrusage (Linux: KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
