"""`loopnerf view`: clean errors for bad input, headless videos, and the pyglet window
under Xvfb (the window tests start their own Xvfb server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "loopnerf.cli", *map(str, args)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
    )


@pytest.fixture(scope="module")
def loop_file(tmp_path_factory):
    from fixtures.demo_loop import make_test_loop
    from loopnerf.export.loop_format import save_loop

    path = tmp_path_factory.mktemp("loop") / "test.loop"
    save_loop(path, make_test_loop())
    return path


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated"])
def test_bad_loop_file_gives_clean_error(tmp_path, loop_file, kind):
    path = tmp_path / f"{kind}.loop"
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(loop_file.read_bytes()[:-1000])
    res = run_cli("view", path, "--headless", "--out", tmp_path / "o.gif")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert str(path) in res.stderr and "error" in res.stderr
    assert not (tmp_path / "o.gif").exists()


def test_headless_needs_out(loop_file):
    res = run_cli("view", loop_file, "--headless")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--out" in res.stderr


def test_headless_gif_matches_renderer(tmp_path, loop_file):
    import imageio.v2 as imageio

    from loopnerf.export.loop_format import load_loop
    from loopnerf.viewer.renderer import Renderer

    out = tmp_path / "loop.gif"
    res = run_cli("view", loop_file, "--headless", "--path", "still", "--seconds", "0.5", "--out", out)
    assert res.returncode == 0, res.stderr
    frames = imageio.mimread(out)
    loop = load_loop(loop_file)
    assert len(frames) == round(0.5 * loop.fps)
    r = Renderer(loop, 40, 30)
    for i in (0, 3):
        want, _ = r.render(r.default_c2w(), i / loop.fps)
        got = np.asarray(frames[i])[..., :3]
        assert got.shape == want.shape
        # GIF quantises colours to a palette: close, not exact.
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 4.0


def test_headless_mp4_orbit_and_pose_file(tmp_path, loop_file):
    import imageio.v2 as imageio

    poses = np.stack([np.eye(4)] * 3).astype(np.float32)
    poses[:, 2, 3] = [4.0, 3.5, 3.0]
    np.save(tmp_path / "path.npy", poses)
    res = run_cli("view", loop_file, "--headless", "--path", tmp_path / "path.npy", "--out", tmp_path / "p.mp4",
                  "--width", "32", "--height", "24")
    assert res.returncode == 0, res.stderr
    reader = imageio.get_reader(tmp_path / "p.mp4")
    frames = [f for f in reader]
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3)
    res = run_cli("view", loop_file, "--headless", "--path", tmp_path / "nope.json", "--out", tmp_path / "q.mp4")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "nope.json" in res.stderr


# ---------------------------------------------------------------------- window (Xvfb)
@pytest.fixture(scope="module")
def xvfb_display():
    from fixtures.xvfb import start_xvfb

    try:
        proc, display = start_xvfb("800x600x24")
    except FileNotFoundError:
        from conftest import require_or_skip

        require_or_skip("Xvfb is not installed (bash scripts/setup.sh installs it); the window tests need it")
    except RuntimeError as err:
        pytest.fail(str(err))
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(timeout=10)


def _framebuffer(pyglet, width, height) -> np.ndarray:
    buf = pyglet.image.get_buffer_manager().get_color_buffer().get_image_data()
    data = np.frombuffer(buf.get_data("RGB", width * 3), dtype=np.uint8).reshape(height, width, 3)
    return data[::-1]  # OpenGL rows run bottom-up


@pytest.mark.viewer
def test_moving_size_adapts_to_the_render_time(xvfb_display):
    """While the camera moves, a render four times over budget halves the size (cost ~
    pixels); a fast one grows it by one rung only; the size never leaves the ladder."""
    from fixtures.demo_loop import make_test_loop
    from loopnerf.viewer.app import MOVING_FACTOR, MOVING_FACTORS, MOVING_RENDER_BUDGET, ViewerApp
    from loopnerf.viewer.renderer import Renderer

    app = ViewerApp(Renderer(make_test_loop(), 80, 60), 80, 60, visible=False)
    try:
        assert MOVING_FACTORS[app.moving_level] == pytest.approx(MOVING_FACTOR)
        app._adapt_moving_size(4.0 * MOVING_RENDER_BUDGET)
        assert MOVING_FACTORS[app.moving_level] == pytest.approx(MOVING_FACTOR / 2)
        app._adapt_moving_size(1e-6)
        assert MOVING_FACTORS[app.moving_level] == pytest.approx(MOVING_FACTOR / 2 * 2 ** 0.25)
        for _ in range(40):
            app._adapt_moving_size(10.0)
        assert app.moving_level == len(MOVING_FACTORS) - 1  # 1/8, the smallest rung
        for _ in range(40):
            app._adapt_moving_size(1e-6)
        assert app.moving_level == 0 and app.render_size(moving=True) == app.render_size()
    finally:
        app.close()


@pytest.mark.viewer
def test_window_scripted_events_and_screenshot(tmp_path, xvfb_display):
    import imageio.v2 as imageio
    import pyglet

    from fixtures.demo_loop import make_test_loop
    from loopnerf.viewer.app import ViewerApp, depth_to_rgb
    from loopnerf.viewer.renderer import Renderer

    loop = make_test_loop()
    renderer = Renderer(loop, 80, 60)
    app = ViewerApp(renderer, 80, 60)
    key, mouse = pyglet.window.key, pyglet.window.mouse
    try:
        for _ in range(3):
            app.step(0.05)
        assert app.playing and app.time > 0
        home = app.camera.c2w()
        # Orbit with the left button: the camera turns and the image is rendered small.
        app.window.dispatch_event("on_mouse_drag", 40, 30, 12, -5, mouse.LEFT, 0)
        small = app.render_size(moving=True)  # the rung the moving frame renders at
        app.step(0.01)
        assert not np.allclose(app.camera.c2w(), home)
        assert app.last_rgb.shape[:2] == (small[1], small[0]) and small[0] < 80 and small[1] < 60
        # Releasing the button ends the move at once: the next frame is full size.
        app.window.dispatch_event("on_mouse_release", 40, 30, mouse.LEFT, 0)
        app.step(0.01)
        assert not app.moving() and app.last_rgb.shape[:2] == (60, 80)
        # Pan (right button) and zoom (wheel) move the camera too.
        before = app.camera.c2w()
        app.window.dispatch_event("on_mouse_drag", 40, 30, 5, 5, mouse.RIGHT, 0)
        app.window.dispatch_event("on_mouse_scroll", 40, 30, 0, 2)
        app.step(0.01)  # pyglet queues events outside dispatch_events: a step applies them
        assert not np.allclose(app.camera.c2w(), before)
        # Pause: the clock stops.
        app.window.dispatch_event("on_key_press", key.SPACE, 0)
        app.step(0.01)
        assert not app.playing
        t_paused = app.time
        app.step(0.2)
        assert app.time == t_paused
        # Frame step forward lands on the next loop frame.
        app.window.dispatch_event("on_key_press", key.PERIOD, 0)
        app.step(0.01)
        assert abs(app.time * loop.fps - (round(t_paused * loop.fps) + 1)) < 1e-9
        # Resize: once the camera rests, the render size follows the window.
        app.window.set_size(160, 120)
        app.step(0.01)  # the resize event arrives and counts as camera motion (small render)
        app.last_input = -1e9  # as if the user had let go a while ago
        app.step(0.01)
        assert app.window.get_framebuffer_size() == (160, 120)
        assert app.last_rgb.shape == (120, 160, 3)
        # The screenshot is the renderer's image for the window's camera and time.
        shot = app.save_screenshot(tmp_path / "shot.png")
        want, depth = renderer.render(app.camera.c2w(), app.time, intrinsics=renderer.intrinsics_for(160, 120))
        assert np.array_equal(imageio.imread(shot)[..., :3], want)
        # What is on screen (below the HUD corner) is that image too.
        assert want[64:].std() > 1.0  # and that part shows the blob, not only background
        app.on_draw()  # draw into the back buffer and read it before any swap
        screen = _framebuffer(pyglet, 160, 120)
        assert np.abs(screen[64:].astype(int) - want[64:].astype(int)).mean() < 2.0
        # Depth toggle shows the depth visualisation, and back.
        app.window.dispatch_event("on_key_press", key.D, 0)
        app.step(0.01)
        assert np.array_equal(app.displayed_image(), depth_to_rgb(depth, loop.far))
        app.window.dispatch_event("on_key_press", key.D, 0)
        # Reset restores the default camera; q quits.
        app.window.dispatch_event("on_key_press", key.R, 0)
        app.step(0.01)
        assert not app.show_depth
        np.testing.assert_allclose(app.camera.c2w(), home, atol=1e-6)
        app.window.dispatch_event("on_key_press", key.Q, 0)
        app.step(0.01)
        assert app.closed
    finally:
        app.close()


@pytest.mark.viewer
def test_window_cli_frames_and_screenshot(tmp_path, loop_file, xvfb_display):
    import imageio.v2 as imageio

    env = dict(os.environ, DISPLAY=xvfb_display)
    shot = tmp_path / "shot.png"
    res = run_cli("view", loop_file, "--frames", "5", "--screenshot", shot, "--width", "64", "--height", "48", env=env)
    assert res.returncode == 0, res.stderr
    img = imageio.imread(shot)
    assert img.shape[:2] == (48, 64)
    assert img.std() > 1.0  # the scene shows, not a blank image
