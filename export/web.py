"""`loopnerf export --format web`: a folder with a page that plays the loop in a browser.

    index.html    the page (three.js via an import map; no network access needed)
    player.js     loads scene.glb, plays its "loop" animation endlessly, orbit controls
    scene.glb     the glb export (`loopnerf.export.glb`)
    scene.json    {"glb", "frames", "fps", "background" (display sRGB), "camera": {"matrix"
                  (camera-to-world, column-major, in the glb's +Y-up frame), "fx", "fy",
                  "cx", "cy", "width", "height", "near", "far"}, "target" (orbit centre)}
    three/        the three.js files the page imports (build/, the GLTF loader, orbit
                  controls and their helpers) and three.js's LICENSE

Serve the folder with any static file server (`python3 -m http.server -d FOLDER`) and
open index.html; browsers refuse ES modules from file:// URLs.

three.js is not shipped inside LoopNeRF: `scripts/setup.sh` installs the npm package
into `web/node_modules` (pinned by `web/package-lock.json`); `LOOPNERF_THREE` may point
at another copy of the npm package's folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from loopnerf.errors import LoopNeRFError

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.export.tsdf import FusedLoop, FusionOptions

TEMPLATE = Path(__file__).resolve().parent / "web_template"
REPO_WEB = Path(__file__).resolve().parents[1] / "web"
# The files of the npm package `three` that the page imports (relative to the package).
THREE_FILES = (
    "LICENSE",
    "build/three.module.js",
    "build/three.core.js",
    "examples/jsm/loaders/GLTFLoader.js",
    "examples/jsm/utils/BufferGeometryUtils.js",
    "examples/jsm/utils/SkeletonUtils.js",
    "examples/jsm/controls/OrbitControls.js",
)


def find_three() -> Path:
    """The folder of the npm package `three`: $LOOPNERF_THREE, else the repository's
    `web/node_modules/three`. Raises LoopNeRFError naming how to install it."""
    env = os.environ.get("LOOPNERF_THREE")
    candidates = [Path(env)] if env else [REPO_WEB / "node_modules" / "three"]
    for c in candidates:
        if all((c / f).is_file() for f in THREE_FILES):
            return c
    where = candidates[0]
    raise LoopNeRFError(
        f"three.js not found at {where} (need {', '.join(THREE_FILES[1:3])}, ...): run "
        "`bash scripts/setup.sh` (it runs `npm ci` in web/), or `npm install three` somewhere "
        "and set LOOPNERF_THREE to its node_modules/three folder"
    )


def page_config(baked: "BakedLoop", focus_depth: float, glb_name: str = "scene.glb") -> dict:
    """scene.json's content (see the module docstring)."""
    from loopnerf.export.glb import glb_camera, up_rotation

    cam = baked.camera
    _, matrix = glb_camera(baked)
    rot = up_rotation(baked.up)
    c2w = np.asarray(cam["c2w"], dtype=np.float64)
    target = rot @ (c2w[:3, 3] - c2w[:3, 2] * focus_depth)
    return {
        "glb": glb_name,
        "frames": int(baked.frames),
        "fps": float(baked.fps),
        "background": [float(c) for c in baked.background],
        "camera": {
            "matrix": matrix,
            **{k: float(cam[k]) for k in ("fx", "fy", "cx", "cy")},
            "width": int(cam["width"]),
            "height": int(cam["height"]),
            "near": float(max(min(baked.near, 0.05 * focus_depth), 1e-3)),
            "far": float(baked.far),
        },
        "target": [float(v) for v in target],
    }


def export_web(
    baked: "BakedLoop",
    out_dir: Path,
    *,
    stills: "Sequence[np.ndarray]" = (),
    options: "FusionOptions | None" = None,
    progress: bool = True,
    fused: "FusedLoop | None" = None,
) -> Path:
    """Write the web folder (module docstring) into out_dir; returns index.html's path."""
    from loopnerf.export.glb import export_glb
    from loopnerf.export.tsdf import fuse_loop

    three = find_three()  # fail before the (slow) fusion when three.js is missing
    out_dir = Path(out_dir)
    if fused is None:
        fused = fuse_loop(baked, stills, options, progress=progress)
    export_glb(baked, out_dir, fused=fused)
    (out_dir / "scene.json").write_text(json.dumps(page_config(baked, fused.stats["focus_depth"]), indent=2))
    for name in ("index.html", "player.js"):
        shutil.copyfile(TEMPLATE / name, out_dir / name)
    for rel in THREE_FILES:
        dst = out_dir / "three" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(three / rel, dst)
    return out_dir / "index.html"
