"""The exports in a real engine: three.js in headless Chromium, measured against the viewer.

Used by the tests and `benchmarks/export_glb.py`. Needs Debian's `chromium`, Node.js and
the npm packages of `web/package.json` (three, playwright-core), which
`scripts/setup.sh` installs; `browser_tools()` says what is missing.

- `serve(folder)`: a static file server on 127.0.0.1 (an ephemeral port) in a thread;
- `render_in_browser(web_dir, views)`: the web export's page in measure mode draws each
  view (exact pinhole camera, playback time) with three.js and returns RGBA images;
- `play_in_browser(web_dir)`: the page as a person opens it, sampled over time;
- `engine_views(baked, cameras, width, height, times)`: the view dicts for cameras given
  as loop-world camera-to-world matrices;
- `compare_to_viewer(rgba, viewer_rgb, viewer_opacity)`: coverage and PSNR.

The browser driver (`web/driver.cjs`) blocks every request that is not to 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from loopnerf.errors import LoopNeRFError

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.viewer import Intrinsics

WEB = Path(__file__).resolve().parents[1] / "web"
DRIVER = WEB / "driver.cjs"
COVER_OPACITY = 0.5  # the viewer "covers" a pixel whose opacity is at least this


@dataclass
class BrowserTools:
    chromium: str | None
    node: str | None
    node_modules: Path

    def missing(self) -> list[str]:
        """What is not installed (empty when the browser tests can run)."""
        out = []
        if not self.chromium:
            out.append("chromium (apt-get install chromium)")
        if not self.node:
            out.append("node (apt-get install nodejs npm)")
        for pkg in ("playwright-core", "three"):
            if not (self.node_modules / pkg / "package.json").is_file():
                out.append(f"npm package {pkg} in {self.node_modules} (npm ci in web/)")
        if not DRIVER.is_file():
            out.append(str(DRIVER))
        return out


def browser_tools() -> BrowserTools:
    """Where Chromium ($LOOPNERF_CHROMIUM or /usr/bin/chromium), node and web/node_modules are."""
    chromium = os.environ.get("LOOPNERF_CHROMIUM") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium"))
    return BrowserTools(chromium, shutil.which("node"), WEB / "node_modules")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".glb": "model/gltf-binary"}

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1 (a free port) while the block runs; yields
    the base URL ("http://127.0.0.1:PORT/")."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _run_driver(mode: str, url: str, payload: dict, timeout: float) -> dict:
    tools = browser_tools()
    missing = tools.missing()
    if missing:
        raise LoopNeRFError("the browser check needs: " + "; ".join(missing) + " -- run `bash scripts/setup.sh`")
    with tempfile.TemporaryDirectory(prefix="loopnerf-driver-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(payload))
        env = dict(os.environ, LOOPNERF_CHROMIUM=str(tools.chromium), NODE_PATH=str(tools.node_modules))
        cmd = [str(tools.node), str(DRIVER), mode, url, str(src), str(dst)]
        for attempt in (1, 2):  # one retry: a loaded 2-core machine can stall a browser start
            returncode, stderr = _run_group(cmd, env, timeout)
            if returncode is not None:
                break
        if returncode is None:
            raise RuntimeError(f"browser driver timed out twice after {timeout:.0f} s: {stderr[-2000:]}")
        if returncode != 0 or not dst.exists():
            raise RuntimeError(f"browser driver failed (exit {returncode}): {stderr[-2000:]}")
        return json.loads(dst.read_text())


def _run_group(cmd: list[str], env: dict, timeout: float) -> tuple[int | None, str]:
    """Run `cmd` in its own process group (node and the Chromium it starts); on timeout
    end that group (only it) and return (None, stderr)."""
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(WEB),
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err or ""


def render_in_browser(web_dir: Path, views: Sequence[dict], *, timeout: float = 180.0) -> tuple[list[dict], dict]:
    """Draw `views` with three.js (the web export's page in measure mode).

    Returns (one dict per view: "rgba" uint8 [H, W, 4] (row 0 = top; alpha 0 where no
    mesh), "frame" (the loop frame node three.js showed), and the driver's output
    {"errors", "blocked", "gl_renderer"})."""
    with serve(web_dir) as url:
        out = _run_driver("render", url + "index.html", {"views": list(views)}, timeout)
    if out.get("errors") and "results" not in out:
        raise RuntimeError("the page failed: " + "; ".join(out["errors"]))
    results = []
    for view, res in zip(views, out["results"]):
        px = np.frombuffer(base64.b64decode(res["rgba"]), np.uint8).reshape(view["height"], view["width"], 4)
        results.append({"rgba": px[::-1].copy(), "frame": int(res["frame"])})
    return results, {k: out.get(k) for k in ("errors", "blocked", "gl_renderer")}


def play_in_browser(web_dir: Path, *, width: int = 320, height: int = 240, samples: int = 8, interval_ms: int = 250,
                    timeout: float = 120.0) -> dict:
    """Open the web export's page as a person would and sample it `samples` times,
    `interval_ms` apart: {"samples": [{"ms", "frame", "drawn", "time", "image" uint8
    [H, W, 3]}], "errors", "blocked"}."""
    import imageio.v3 as iio

    with serve(web_dir) as url:
        out = _run_driver("play", url + "index.html", {"width": width, "height": height, "samples": samples,
                                                       "interval_ms": interval_ms}, timeout)
    for s in out.get("samples", []):
        s["image"] = iio.imread(base64.b64decode(s.pop("png")))[..., :3]
    return out


def engine_views(baked: "BakedLoop", cameras: Sequence[np.ndarray], intr: "Intrinsics", times: Sequence[float]) -> list[dict]:
    """The page's view dicts for loop-world cameras (camera-to-world [4, 4], OpenGL axes),
    in the glb's +Y-up frame, with intrinsics `intr` and playback times (seconds)."""
    from loopnerf.export.glb import up_rotation

    rot = up_rotation(baked.up)
    views = []
    for c2w, t in zip(cameras, times):
        c2w = np.asarray(c2w, dtype=np.float64)
        m = np.eye(4)
        m[:3, :3] = rot @ c2w[:3, :3]
        m[:3, 3] = rot @ c2w[:3, 3]
        views.append({
            "matrix": [float(v) for v in m.T.reshape(-1)],
            "fx": float(intr.fx), "fy": float(intr.fy), "cx": float(intr.cx), "cy": float(intr.cy),
            "width": int(intr.width), "height": int(intr.height), "time": float(t),
        })
    return views


def compare_to_viewer(rgba: np.ndarray, viewer_rgb: np.ndarray, viewer_opacity: np.ndarray,
                      min_opacity: float = COVER_OPACITY) -> dict:
    """How an engine's image matches the viewer's at the same camera and time.

    Args:
        rgba: the engine's uint8 [H, W, 4]; alpha > 0 where it drew a mesh.
        viewer_rgb: the viewer's uint8 [H, W, 3]; viewer_opacity float [H, W].
    Returns {"coverage": share of the pixels the viewer covers (opacity >= min_opacity)
    that the engine covers too, "viewer_covers": share of the image the viewer covers,
    "engine_covers": same for the engine, "extra": share of the image the engine covers
    but the viewer does not, "psnr": dB on the pixels both cover (RGB in [0, 1])}."""
    eng = rgba[..., 3] > 0
    view = viewer_opacity >= min_opacity
    both = eng & view
    n_view = int(view.sum())
    diff = rgba[..., :3][both].astype(np.float64) / 255.0 - viewer_rgb[both].astype(np.float64) / 255.0
    mse = float(np.mean(diff**2)) if both.any() else float("nan")
    return {
        "coverage": float(both.sum() / n_view) if n_view else float("nan"),
        "viewer_covers": float(view.mean()),
        "engine_covers": float(eng.mean()),
        "extra": float((eng & ~view).mean()),
        "psnr": -10.0 * math.log10(max(mse, 1e-12)) if both.any() else float("nan"),
    }


def validate_glb(path: Path, *, timeout: float = 120.0) -> dict:
    """The Khronos glTF validator's report of a .glb (npm gltf-validator): {"issues":
    {"numErrors", "numWarnings", "messages": [...]}, "info": {...}, ...}."""
    tools = browser_tools()
    if not tools.node or not (tools.node_modules / "gltf-validator" / "package.json").is_file():
        raise LoopNeRFError("the glTF validator needs node and the npm package gltf-validator (npm ci in web/)")
    with tempfile.TemporaryDirectory(prefix="loopnerf-validate-") as tmp:
        dst = Path(tmp) / "report.json"
        proc = subprocess.run([str(tools.node), str(DRIVER), "validate", str(Path(path).resolve()), "-", str(dst)],
                              capture_output=True, text=True, timeout=timeout, cwd=str(WEB))
        if proc.returncode != 0 or not dst.exists():
            raise RuntimeError(f"glTF validator failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(dst.read_text())
