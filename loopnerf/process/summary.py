"""The summary of a processed video: figures (JSON) and a top view of the camera path."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_camera_path(path: Path, c2w: np.ndarray, times: np.ndarray, points: np.ndarray, title: str) -> Path:
    """Top view (looking down -Y, the normalised world's up) of the registered cameras:
    centres coloured by time, short arrows along each viewing direction, the sparse
    points in grey and the look-at point (origin) as a cross.

    Args:
        c2w: [N, 4, 4] camera-to-world, OpenGL axes, normalised world.
        times: [N] capture time in [0, 1] of each camera.
        points: [P, 3] sparse points (only those near the cameras are drawn).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = c2w[:, :3, 3]
    fwd = -c2w[:, :3, 2]
    reach = max(float(np.abs(centres[:, [0, 2]]).max()), 1e-3) * 1.3
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    if len(points):
        near = points[(np.abs(points[:, 0]) < reach) & (np.abs(points[:, 2]) < reach)]
        ax.scatter(near[:, 0], near[:, 2], s=1, c="0.7", label="sparse points")
    ax.plot(centres[:, 0], centres[:, 2], "-", c="0.4", lw=0.8)
    sc = ax.scatter(centres[:, 0], centres[:, 2], c=times, cmap="viridis", s=18, zorder=3, vmin=0, vmax=1)
    arrow = 0.12 * reach
    ax.quiver(centres[:, 0], centres[:, 2], fwd[:, 0] * arrow, fwd[:, 2] * arrow, angles="xy",
              scale_units="xy", scale=1, width=0.003, color="tab:red", zorder=2)
    ax.plot([0], [0], "k+", ms=12, mew=2, label="look-at point")
    ax.set_xlim(-reach, reach)
    ax.set_ylim(reach, -reach)  # +Z towards the viewer of the plot: x right, z down the page
    ax.set_aspect("equal")
    ax.set_xlabel("x (world units)")
    ax.set_ylabel("z (world units)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label="time")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MiB), from getrusage (Linux: KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
