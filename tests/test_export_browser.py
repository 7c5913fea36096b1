"""The glb and web exports in a real engine: three.js (npm `three`) in headless Chromium
(Debian's `chromium`, driven by npm `playwright-core`; `scripts/setup.sh` installs all
three). Only loopback traffic: the page is served from 127.0.0.1 and the driver blocks
every other host.

- the glb drawn by three.js at the default camera and 20 degrees to either side, at every
  loop frame (seeking to exactly k / fps), covers >= 90 % of the pixels the viewer covers
  and matches the viewer's colours at >= 22 dB PSNR where both cover; three.js shows
  frame k at k / fps (exact key times);
- the Khronos glTF validator finds no error;
- the web page loads, plays (the frame shown changes over time, and so do the pixels),
  and logs no error.
The demo loop's figures: `benchmarks/export_glb.py` and the slow test at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from loopnerf.export import save_loop
from loopnerf.export.browser import browser_tools, compare_to_viewer, engine_views, play_in_browser, render_in_browser

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
DEMO_LOOP = REPO / "runs" / "demo" / "run" / "scene.loop"


def _need_browser():
    missing = browser_tools().missing()
    if missing:
        message = "browser tests need " + "; ".join(missing) + " (bash scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def web_export(tmp_path_factory):
    """The room test loop (floor, wall, a cube, a ball circling and turning red -> blue;
    64 x 48 px camera, 6 frames) exported as a web folder with the default options."""
    _need_browser()
    from loopnerf.export.command import export
    from loopnerf.export.room_loop import make_room_loop

    baked = make_room_loop()
    root = tmp_path_factory.mktemp("web")
    loop_path = save_loop(root / "scene.loop", baked)
    export(loop_path, "web", root / "web", quiet=True)
    return baked, root / "web"


def _figures(baked, web_dir, degrees, size):
    from loopnerf.export.tsdf import around_default
    from loopnerf.viewer import Renderer
    from loopnerf.viewer.renderer import EXPORT_BACKEND

    renderer = Renderer(baked, *size, backend=EXPORT_BACKEND)  # what the export fused
    intr = renderer.intrinsics_for(*size)
    import json

    focus = json.loads((web_dir / "scene.glb.json").read_text())["focus_depth"]
    F = baked.frames
    cams = [around_default(baked, d, focus) for d in degrees]
    views = engine_views(baked, [c for c in cams for _ in range(F)], intr, [k / baked.fps for _ in cams for k in range(F)])
    results, info = render_in_browser(web_dir, views)
    figures = []
    for i, res in enumerate(results):
        c, k = cams[i // F], i % F
        rgb, _, opacity = renderer.render_phase_with_opacity(c.astype(np.float32), k / F, intrinsics=intr)
        figures.append(dict(compare_to_viewer(res["rgba"], rgb, opacity), degrees=degrees[i // F], frame=k, shown=res["frame"]))
    return figures, info


def test_glb_in_threejs_matches_the_viewer(web_export):
    baked, web_dir = web_export
    degrees = [0.0, -20.0, 20.0]
    figures, info = _figures(baked, web_dir, degrees, (baked.camera["width"], baked.camera["height"]))
    assert info["errors"] == [] and info["blocked"] == []
    for f in figures:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in f.items()})
    # three.js shows frame k when asked for time k / fps (exact key times)
    assert [f["shown"] for f in figures] == [f["frame"] for f in figures]
    assert all(f["viewer_covers"] > 0.5 for f in figures)  # floor, wall, cube, ball
    # measured: coverage 0.981-0.989, PSNR 26.5-29.4 dB per camera (worst frame 24.6 dB);
    # with the expected depth fused (before): 0.937-0.967, 25.6-28.0 dB (24.2 dB)
    assert min(f["coverage"] for f in figures) >= 0.90
    for d in degrees:
        assert np.mean([f["psnr"] for f in figures if f["degrees"] == d]) >= 22.0
    assert min(f["psnr"] for f in figures) >= 21.0
    assert max(f["extra"] for f in figures) < 0.02  # and it draws little where the viewer shows sky


def test_glb_passes_the_gltf_validator(web_export):
    from loopnerf.export.browser import validate_glb

    _, web_dir = web_export
    report = validate_glb(web_dir / "scene.glb")
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    assert report["info"]["animationCount"] == 1


def test_web_page_plays_the_loop(web_export):
    baked, web_dir = web_export
    out = play_in_browser(web_dir, width=160, height=120, samples=8, interval_ms=150)
    assert out["errors"] == [] and out["blocked"] == []
    samples = out["samples"]
    frames = [s["frame"] for s in samples]
    assert all(0 <= f < baked.frames for f in frames)
    assert len(set(frames)) >= 3, frames  # 12 fps, 6 frames, sampled over ~1 s
    assert samples[-1]["drawn"] > samples[0]["drawn"]  # the page keeps drawing
    images = [s["image"].astype(np.int16) for s in samples]
    assert images[0].shape == (120, 160, 3)
    changed = [np.abs(a - b).max() for a, b in zip(images, images[1:])]
    assert max(changed) > 40  # the ball moves and changes colour on screen
    # the loop's background where nothing is drawn (the sky at the right edge)
    bg = np.round(np.asarray(baked.background) * 255)
    assert np.abs(images[0][60, -2] - bg).max() <= 2


@pytest.fixture(scope="module")
def demo_figures(tmp_path_factory):
    """benchmarks/export_glb.py's figures on the demo's baked loop (`loopnerf demo` writes
    runs/demo/run/scene.loop; minutes: the fusion renders 13 cameras x 24 frames)."""
    _need_browser()
    if not DEMO_LOOP.exists():
        message = f"{DEMO_LOOP} missing: run `loopnerf demo` first"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from export_glb import measure

    log: list = []
    figures = measure(DEMO_LOOP, tmp_path_factory.mktemp("demo_export"), log=log)
    return figures, log


@pytest.mark.slow
def test_demo_glb_in_threejs(demo_figures):
    """The demo loop in three.js: >= 90 % of what the viewer covers at the default camera
    and +-20 degrees (yaw and pitch), <= 20 MB, frame k at k / fps, a clean validator report, the page
    plays; layers within 30 s and within 1 dB of the 67 dB they composed back to before."""
    figures, log = demo_figures
    assert figures["glb_mb"] <= 20.0
    for f in figures["views"]:
        assert f["coverage"] >= 0.90, f  # yaw and pitch alike
        assert f["frame_k_at_k_over_fps"], f
    lines = {line["figure"]: line for line in log}
    assert lines["gltf_validator"]["errors"] == 0
    assert lines["web_page"]["errors"] == [] and lines["web_page"]["distinct"] >= 3
    assert figures["layers"]["seconds"] <= 30.0
    assert figures["layers"]["psnr_vs_viewer_min"] >= 66.0


@pytest.mark.slow
def test_demo_glb_colours_match_the_viewer(demo_figures):
    """At the default camera and 20 degrees to either side, about the up axis and about
    the camera's right axis, the glb in three.js matches the viewer at >= 22 dB where
    both cover (measured on this session's demo loop: 27.0 / 24.0 / 24.4 dB yaw, 22.8 /
    24.4 dB at -20 / +20 pitch; fusing the expected depth instead: 21.5 dB at -20 pitch)."""
    figures, _ = demo_figures
    assert len(figures["views"]) == 5
    for f in figures["views"]:
        assert f["psnr"] >= 22.0, f
