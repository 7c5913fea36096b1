"""The pyglet window of `loopnerf view`: the renderer's image as a texture, plus input.

`ViewerApp` owns the window, the `OrbitCamera`, the playback clock and the `Renderer`;
`run_window` drives it with a plain loop (`step` = events, one render if anything
changed, draw, flip), so tests can script events and step it frame by frame.

Controls: left drag orbit, right / middle drag pan, wheel zoom; space play/pause,
+/- speed, ,/. one loop frame back/forward (pauses), d RGB/depth, s screenshot PNG,
r reset camera, h help overlay, q / Esc quit.

Speed: while the camera moves (an input event in the last MOVING_SECONDS, or in the
last two frames when a frame takes longer; a released mouse button ends it at once) the image is rendered with MOVING_STEP_SCALE
times the marching step at a reduced size that adapts to the machine: from
MOVING_FACTOR, each moving frame moves down (or one step up) the ladder MOVING_FACTORS
so that its render fits MOVING_RENDER_BUDGET (a 30 fps frame, less the window's own
work), and the image is refined at full size as soon as the camera stops; a still
camera playing at speed 1 replays the F cached loop frames (`FrameCache`) instead of
rendering.
"""

from __future__ import annotations

import math
import time as _time
from pathlib import Path

import numpy as np

MOVING_SECONDS = 0.12  # an input event younger than this means "the camera moves"
MOVING_FACTOR = 0.5  # render size factor of the first moving frame
MOVING_FACTORS = tuple(2.0 ** (-k / 4) for k in range(13))
"""The sizes a moving camera renders at (factors of the render size): 1 down to 1/8 in
quarter octaves, so the size changes in a few steps and the renderer keeps few buffers."""
MOVING_RENDER_BUDGET = 0.8 / 30.0
"""Seconds a moving frame's render may take: 30 fps, less ~7 ms of upload and drawing."""
MOVING_STEP_SCALE = 2.0  # and marching-step factor (half the samples per ray)
SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)

HELP_TEXT = (
    "left drag: orbit   right/middle drag: pan   wheel: zoom\n"
    "space: play/pause   +/-: speed   , / . : frame step\n"
    "d: RGB/depth   s: screenshot   r: reset camera\n"
    "h: this help   q / Esc: quit"
)


def depth_to_rgb(depth: np.ndarray, far: float) -> np.ndarray:
    """Depth [H, W] (world units) -> uint8 [H, W, 3] grey image, near = white.

    The range is the 1st..99th percentile of the pixels that hit something (depth
    below `far`), so the visible part of the scene spans the grey ramp."""
    hit = depth < far * 0.999
    if not hit.any():
        return np.zeros(depth.shape + (3,), dtype=np.uint8)
    lo, hi = np.percentile(depth[hit], [1.0, 99.0])
    v = 1.0 - (depth - lo) / max(hi - lo, 1e-6)
    v = np.where(hit, np.clip(v, 0.0, 1.0) * 0.9 + 0.1, 0.0)
    return np.repeat((v * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


class ViewerApp:
    """A window playing a baked loop forever.

    Args:
        renderer: the `Renderer` (its loop gives fps, F, camera, box, up, far).
        width, height: window size in pixels.
        scale: render size = window size * scale (the texture is stretched to fit).
        title: window caption.
        visible: create the window visible (tests may hide it).
    """

    def __init__(self, renderer, width: int, height: int, *, scale: float = 1.0, title: str = "LoopNeRF",
                 visible: bool = True):
        import pyglet

        from loopnerf.viewer.orbit_camera import OrbitCamera
        from loopnerf.viewer.renderer import FrameCache

        self.pyglet = pyglet
        self.renderer = renderer
        loop = renderer.loop
        self.scale = float(scale)
        self.step_scale = renderer.step_scale  # the still camera's step factor
        self.camera = OrbitCamera(renderer.default_c2w(), loop.box, loop.up)
        self.cache = FrameCache(renderer)
        self.time = 0.0  # playback seconds
        self.playing = True
        self.speed = 1.0
        self.show_depth = False
        self.show_help = False
        self.frames_shown = 0
        self.last_rgb: np.ndarray | None = None  # latest render, uint8 [h, w, 3]
        self.last_depth: np.ndarray | None = None
        self.last_render_key = None
        self.last_input = -1e9
        self.moving_level = MOVING_FACTORS.index(min(MOVING_FACTORS, key=lambda f: abs(f - MOVING_FACTOR)))
        self._last_step_seconds = 0.0
        self._fps = 0.0
        self._last_flip = None
        self._texture = None
        self._texture_depth = False
        config = None
        try:  # no multisampling / depth buffer needed: a textured quad and text
            config = pyglet.gl.Config(double_buffer=True, depth_size=0)
        except Exception:  # pragma: no cover - platform without that config
            config = None
        self.window = pyglet.window.Window(width, height, caption=title, resizable=True, vsync=False,
                                           visible=visible, config=config)
        self.hud = pyglet.text.Label("", x=6, y=height - 6, anchor_x="left", anchor_y="top", font_size=10,
                                     color=(255, 255, 255, 255), multiline=True, width=420)
        self.help = pyglet.text.Label(HELP_TEXT, x=6, y=6, anchor_x="left", anchor_y="bottom", font_size=10,
                                      color=(255, 255, 120, 255), multiline=True, width=480)
        self.hud_box = pyglet.shapes.Rectangle(0, 0, 1, 1, color=(0, 0, 0, 150))
        self.help_box = pyglet.shapes.Rectangle(0, 0, 1, 1, color=(0, 0, 0, 150))
        w = self.window
        w.push_handlers(
            on_draw=self.on_draw,
            on_resize=self.on_resize,
            on_key_press=self.on_key_press,
            on_mouse_drag=self.on_mouse_drag,
            on_mouse_release=self.on_mouse_release,
            on_mouse_scroll=self.on_mouse_scroll,
        )
        self.closed = False
        self._quit = False

        @w.event
        def on_close():
            # Close after dispatch_events returns: closing inside it breaks pyglet's Xlib loop.
            self._quit = True
            return pyglet.event.EVENT_HANDLED

    # ------------------------------------------------------------------ sizes
    def render_size(self, moving: bool = False) -> tuple[int, int]:
        """(width, height) of the rendered image for the current window size (while the
        camera moves: at the current rung of MOVING_FACTORS)."""
        w, h = self.window.get_framebuffer_size()
        k = self.scale * (MOVING_FACTORS[self.moving_level] if moving else 1.0)
        return max(1, int(round(w * k))), max(1, int(round(h * k)))

    def moving(self) -> bool:
        # A slow frame must not read as a stop between two drag events.
        window = max(MOVING_SECONDS, 2.0 * self._last_step_seconds)
        return _time.perf_counter() - self.last_input < window

    def _adapt_moving_size(self, seconds: float) -> None:
        """After a moving frame whose render took `seconds`: the largest rung whose render
        is expected to fit MOVING_RENDER_BUDGET (cost ~ pixels), at most one rung up."""
        f = MOVING_FACTORS[self.moving_level]
        want = f * math.sqrt(MOVING_RENDER_BUDGET / max(seconds, 1e-6))
        level = next((i for i, g in enumerate(MOVING_FACTORS) if g <= want), len(MOVING_FACTORS) - 1)
        self.moving_level = max(level, self.moving_level - 1)

    # ------------------------------------------------------------------ input
    def _touch(self) -> None:
        self.last_input = _time.perf_counter()

    def on_mouse_release(self, x, y, button, modifiers):
        # The drag is over: refine now rather than MOVING_SECONDS after its last event.
        self.last_input = -1e9

    def on_mouse_drag(self, x, y, dx, dy, buttons, modifiers):
        mouse = self.pyglet.window.mouse
        h = max(self.window.height, 1)
        if buttons & mouse.LEFT:
            self.camera.orbit(-math.pi * dx / h, -math.pi * dy / h)
        elif buttons & (mouse.RIGHT | mouse.MIDDLE):
            fy = self.renderer.intrinsics_for(*self.render_size()).fy / self.scale
            self.camera.pan(dx / fy, dy / fy)
        else:
            return
        self._touch()

    def on_mouse_scroll(self, x, y, scroll_x, scroll_y):
        self.camera.zoom(0.9 ** scroll_y)
        self._touch()

    def on_key_press(self, symbol, modifiers):
        key = self.pyglet.window.key
        fps = self.renderer.fps
        if symbol == key.SPACE:
            self.playing = not self.playing
        elif symbol in (key.PLUS, key.EQUAL, key.NUM_ADD):
            self.speed = next((s for s in SPEEDS if s > self.speed), SPEEDS[-1])
        elif symbol in (key.MINUS, key.UNDERSCORE, key.NUM_SUBTRACT):
            self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0])
        elif symbol in (key.COMMA, key.PERIOD):
            self.playing = False
            frame = round(self.time * fps) + (1 if symbol == key.PERIOD else -1)
            self.time = frame / fps
        elif symbol == key.D:
            self.show_depth = not self.show_depth
        elif symbol == key.S:
            path = Path(f"loopnerf-{_time.strftime('%Y%m%d-%H%M%S')}.png")
            self.save_screenshot(path)
            print(f"screenshot: {path}")
        elif symbol == key.R:
            self.camera.reset()
            self._touch()
        elif symbol == key.H:
            self.show_help = not self.show_help
        elif symbol in (key.Q, key.ESCAPE):
            self._quit = True  # closed by `step` once the event loop is done with the window
            return self.pyglet.event.EVENT_HANDLED

    def on_resize(self, width, height):
        self.hud.y = height - 6
        self._touch()  # render small while the user drags the border

    # ------------------------------------------------------------------ frames
    def loop_frame(self) -> float:
        """Current position in the loop, in frames, in [0, F)."""
        return self.renderer.phase_at(self.time) * self.renderer.frames

    def update(self, dt: float) -> bool:
        """Advance the playback clock by dt seconds of wall time and render if the
        image changed (camera, loop frame / phase or size). Returns whether it rendered."""
        if self.playing:
            # Keep the clock within one loop so float precision never degrades.
            period = self.renderer.frames / self.renderer.fps
            self.time = math.fmod(self.time + dt * self.speed, period)
        moving = self.moving()
        self.renderer.step_scale = self.step_scale * (MOVING_STEP_SCALE if moving else 1.0)
        w, h = self.render_size(moving)
        intr = self.renderer.intrinsics_for(w, h)
        c2w = self.camera.c2w()
        use_cache = not moving and self.playing and self.speed == 1.0
        if use_cache:
            frame = int(math.floor(self.time * self.renderer.fps + 1e-6)) % self.renderer.frames
            key = ("frame", c2w.tobytes(), frame, w, h, moving)
        else:
            key = ("phase", c2w.tobytes(), self.renderer.phase_at(self.time), w, h, moving)
        if key == self.last_render_key:
            return False
        if use_cache:
            rgb, depth = self.cache.get(c2w, frame, intr)
        else:
            rgb, depth = self.renderer.render(c2w, self.time, intrinsics=intr)
            if moving:
                self._adapt_moving_size(self.renderer.last_frame_seconds or 0.0)
        self.last_rgb, self.last_depth, self.last_render_key = rgb, depth, key
        self._texture = None
        return True

    def displayed_image(self) -> np.ndarray:
        """The image on screen (uint8 [h, w, 3] at render resolution): RGB or depth."""
        if self.last_rgb is None:
            self.update(0.0)
        if self.show_depth:
            return depth_to_rgb(self.last_depth, float(self.renderer.loop.far))
        return self.last_rgb

    def save_screenshot(self, path: str | Path) -> Path:
        """Write the displayed image (render resolution, no overlay) as a PNG."""
        import imageio.v2 as imageio

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(path, self.displayed_image())
        return path

    def on_draw(self):
        pyglet = self.pyglet
        gl = pyglet.gl
        self.window.clear()
        img = self.displayed_image()
        h, w = img.shape[:2]
        if self._texture is None or self._texture_depth != self.show_depth:
            data = pyglet.image.ImageData(w, h, "RGB", np.ascontiguousarray(img).tobytes(), pitch=-w * 3)
            self._texture = data.get_texture()
            self._texture_depth = self.show_depth
            gl.glBindTexture(self._texture.target, self._texture.id)
            # Linear filtering: a reduced-size render (while moving) looks soft, not blocky.
            gl.glTexParameteri(self._texture.target, gl.GL_TEXTURE_MAG_FILTER, gl.GL_LINEAR)
        self._texture.blit(0, 0, width=self.window.width, height=self.window.height)
        rt = self.renderer.last_frame_seconds or 0.0
        self.hud.text = (
            f"{1000 * rt:5.1f} ms render  {self._fps:5.1f} fps\n"
            f"loop frame {self.loop_frame():5.2f} / {self.renderer.frames}  x{self.speed:g}"
            f"{'' if self.playing else '  paused'}\n"
            f"{w}x{h} {'depth' if self.show_depth else 'RGB'}  {self.renderer.arch}"
        )
        self.hud_box.x, self.hud_box.y = 0, self.window.height - self.hud.content_height - 12
        self.hud_box.width, self.hud_box.height = self.hud.content_width + 12, self.hud.content_height + 12
        self.hud_box.draw()
        self.hud.draw()
        if self.show_help:
            self.help_box.width, self.help_box.height = self.help.content_width + 12, self.help.content_height + 12
            self.help_box.draw()
            self.help.draw()

    def step(self, dt: float | None = None) -> bool:
        """One iteration of the main loop: events, clock, render, draw, flip.
        Returns whether a new image was rendered."""
        now = _time.perf_counter()
        if dt is None:
            dt = 0.0 if self._last_flip is None else now - self._last_flip
        if self._last_flip is not None:
            self._last_step_seconds = now - self._last_flip
        if self._last_flip is not None and dt > 0:
            self._fps = 0.9 * self._fps + 0.1 / max(now - self._last_flip, 1e-6) if self._fps else 1.0 / max(now - self._last_flip, 1e-6)
        self._last_flip = now
        self.window.switch_to()
        self.window.dispatch_events()
        if self._quit:
            self.close()
        if self.closed:
            return False
        rendered = self.update(dt)
        self.window.dispatch_event("on_draw")
        self.window.flip()
        self.frames_shown += 1
        return rendered

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.window.close()


def run_window(baked, width: int, height: int, *, scale: float = 1.0, frames: int | None = None,
               screenshot: str | Path | None = None, arch: str | None = None, title: str = "LoopNeRF",
               step_scale: float = 1.0, backend: str = "auto", cache: bool = True) -> int:
    """Open the window and play until it is closed (or after `frames` frames).

    Returns 0. Raises ConfigError when no display can be opened."""
    from loopnerf.errors import ConfigError
    from loopnerf.viewer.renderer import Renderer

    from loopnerf.data.progress import progress_callback

    with progress_callback("building the brick grid", 1) as step:  # seconds for a fitted loop
        renderer = Renderer(baked, max(1, int(width * scale)), max(1, int(height * scale)), arch=arch,
                            step_scale=step_scale, backend=backend, progress=step, cache=cache)
    print(renderer.describe())
    try:
        app = ViewerApp(renderer, width, height, scale=scale, title=f"LoopNeRF - {title}")
    except Exception as err:  # pyglet's NoSuchDisplayException and friends
        if type(err).__name__ in ("NoSuchDisplayException", "NoSuchConfigException", "ImportError") or "display" in str(err).lower():
            raise ConfigError(
                f"view: cannot open a window ({err}); use --headless --out loop.mp4, or run under Xvfb"
            ) from err
        raise
    try:
        while not app.closed:
            rendered = app.step()
            if frames is not None and app.frames_shown >= frames:
                break
            if not rendered:
                _time.sleep(0.005)  # nothing changed (paused, or a cached frame): do not spin
    finally:
        if screenshot is not None and app.last_rgb is not None:
            app.save_screenshot(screenshot)
            print(f"screenshot: {screenshot}")
        app.close()
    return 0
