"""The synthetic scene: trimesh-built static meshes, procedural textures, moving parts.

World frame: +Y up, the ground is the plane y = -0.6, everything lies inside
`SCENE_BOX` = [-1, 1] x [-0.65, 1] x [-1, 1] (world units). The default camera path
orbits the point `LOOK_AT` from the +Z side (see `camera_path.py`).

A scene is a list of static `Part`s (built once) plus the moving parts of the chosen
kinds (`motion.py`), which are rebuilt for every frame from the phase and amplitude the
scene's `MotionSchedule` gives that frame. With `motion="periodic"` (the default here)
`phase(frame) = (frame mod P) / P` is computed from the integer frame index, so the
geometry of frames k and k + P is bit-identical: the motion is *exactly* periodic. With
`motion="natural"` the tempo drifts and the amplitude gusts (never repeating exactly);
`parts_at(phase, amplitude)` draws any state, e.g. the uniform cycle at amplitude 1.
"""

from __future__ import annotations

import numpy as np

from loopnerf.synth import textures as tx
from loopnerf.synth import motion as movers
from loopnerf.synth.parts import (  # noqa: F401  (re-exported: the scene's public names)
    AMBIENT, BACKDROPS, BACKGROUND, FLAG_ROOT, GROUND_Y, LIGHT_DIR, LOOK_AT, POOL_CENTER, POOL_SIZE, SCENE_BOX, WINDMILL_HUB, Palette, Part, far_panorama, grid_faces, grid_normals, make_part,
)

SCENE_KINDS = {
    "flag": ("flag",),
    "windmill": ("windmill",),
    "water": ("water",),
    "all": ("flag", "windmill", "water"),
}


# --------------------------------------------------------------------------- static parts
def _transform(vertices: np.ndarray, yaw_deg: float, offset) -> np.ndarray:
    """Rotate [V, 3] points about +Y by `yaw_deg` degrees, then translate by `offset`."""
    a = np.deg2rad(yaw_deg)
    r = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    return vertices @ r.T + np.asarray(offset)


def ground(pal: Palette) -> Part:
    """The 2 x 2 floor at y = -0.6: a warm checkerboard (0.2-unit squares) with mottling."""
    v = np.array([[-1, GROUND_Y, -1], [-1, GROUND_Y, 1], [1, GROUND_Y, 1], [1, GROUND_Y, -1]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    light, dark = pal.color(0.09, 0.35, 0.92), pal.color(0.03, 0.6, 0.62)

    def albedo(p):
        c = tx.mix(light, dark, tx.checker(p, 0.2, axes=(0, 2)))
        return c * pal.shade(p, 5.0, 0.35)[:, None]

    return make_part("ground", v, f, albedo)


def backdrop_wall(pal: Palette) -> Part:
    """A half-cylinder wall (radius 0.97, behind the scene) painted in coloured panels."""
    radius, n_theta = 0.97, 64
    theta = np.linspace(np.pi / 2, 3 * np.pi / 2, n_theta)  # azimuth, 0 = +Z; pi = behind
    ys = np.array([GROUND_Y, 0.95])
    th, yy = np.meshgrid(theta, ys, indexing="ij")
    p = np.stack([radius * np.sin(th), yy, radius * np.cos(th)], -1)
    normals = -np.stack([np.sin(th), np.zeros_like(th), np.cos(th)], -1)  # facing the centre
    tex = np.stack([th * radius, yy, np.zeros_like(th)], -1)  # (arc length, height, 0)
    hues = [pal.color(h, s, v) for h, s, v in [(0.58, 0.45, 0.85), (0.13, 0.55, 0.9), (0.95, 0.4, 0.8), (0.33, 0.4, 0.75)]]
    hues = np.stack(hues)

    def albedo(q):
        panel = np.floor(q[:, 0] / 0.17).astype(np.int64) % len(hues)
        c = hues[panel]
        band = tx.stripes(q, (0.0, 1.0, 0.0), 0.3, duty=0.15)  # dark horizontal rails
        c = c * (1.0 - 0.45 * band)[:, None]
        return c * pal.shade(q * np.array([1.0, 1.0, 0.0]), 4.0, 0.3)[:, None]

    return make_part("backdrop", p.reshape(-1, 3), grid_faces(n_theta, 2), albedo, tex.reshape(-1, 3), normals.reshape(-1, 3))


def crate(pal: Palette) -> Part:
    """A 0.4-unit box left front, yawed 25 degrees, with a 3D checker of 0.1-unit cells."""
    import trimesh

    m = trimesh.creation.box(extents=(0.4, 0.4, 0.4))
    local = np.asarray(m.vertices) + [0.2, 0.2, 0.2]  # material space: corner at the origin
    v = _transform(np.asarray(m.vertices), 25.0, (-0.55, GROUND_Y + 0.2, 0.3))
    a, b = pal.color(0.6, 0.7, 0.75), pal.color(0.15, 0.15, 0.95)

    def albedo(p):
        return tx.mix(a, b, tx.checker(p + 1e-4, 0.1)) * pal.shade(p, 6.0, 0.25)[:, None]

    return make_part("crate", v, np.asarray(m.faces), albedo, local)


def drum(pal: Palette) -> Part:
    """A cylinder (radius 0.16, height 0.6) right of centre with red / yellow rings."""
    import trimesh

    m = trimesh.creation.cylinder(radius=0.16, height=0.6, sections=40)
    # trimesh cylinders run along Z: (x, y, z) -> (x, z, -y) turns the axis to +Y (a rotation)
    local = np.asarray(m.vertices)[:, [0, 2, 1]] * [1, 1, -1] + [0, 0.3, 0]
    faces = np.asarray(m.faces)
    v = local + [0.55, GROUND_Y, 0.15]
    a, b = pal.color(0.0, 0.75, 0.8), pal.color(0.12, 0.75, 0.95)

    def albedo(p):
        ring = tx.stripes(p, (0.0, 1.0, 0.0), 0.1)
        ang = np.arctan2(p[:, 0], p[:, 2])
        seam = (np.cos(6 * ang) > 0.8).astype(np.float32)  # six vertical dark lines
        c = tx.mix(a, b, ring) * (1.0 - 0.35 * seam)[:, None]
        return c * pal.shade(p, 6.0, 0.2)[:, None]

    return make_part("drum", v, faces, albedo, local)


def ball(pal: Palette) -> Part:
    """A beach ball (radius 0.18) in front: six coloured longitude gores, white poles."""
    import trimesh

    radius = 0.18
    m = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    local = np.asarray(m.vertices)
    tilt = np.deg2rad(20.0)  # tilt the ball so the gores are not vertical
    r = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    v = local @ r.T + [0.05, GROUND_Y + radius, 0.5]
    normals = (local / radius) @ r.T
    gores = np.stack([pal.color(h, 0.75, 0.9) for h in (0.0, 0.1, 0.17, 0.35, 0.55, 0.75)])
    white = np.array([0.95, 0.95, 0.92], np.float32)

    def albedo(p):
        ang = np.arctan2(p[:, 2], p[:, 0])
        gore = np.floor((ang + np.pi) / (2 * np.pi) * 6).astype(np.int64) % 6
        c = gores[gore]
        pole = (np.abs(p[:, 1]) > 0.8 * radius).astype(np.float32)
        return tx.mix(c, white, pole)

    return make_part("ball", v, np.asarray(m.faces), albedo, local, normals)


def flag_pole(pal: Palette) -> Part:
    """The flag's pole: a thin grey cylinder from the ground to y = 0.85 at `FLAG_ROOT`."""
    import trimesh

    m = trimesh.creation.cylinder(radius=0.022, height=0.85 - GROUND_Y, sections=16)
    local = np.asarray(m.vertices)[:, [0, 2, 1]] * [1, 1, -1]
    faces = np.asarray(m.faces)
    v = local + [FLAG_ROOT[0], (0.85 + GROUND_Y) / 2, FLAG_ROOT[2]]
    a, b = np.array([0.55, 0.55, 0.58], np.float32), np.array([0.3, 0.3, 0.32], np.float32)

    def albedo(p):
        return tx.mix(a, b, tx.stripes(p, (0.0, 1.0, 0.0), 0.12, duty=0.2))

    return make_part("pole", v, faces, albedo, local)


def windmill_tower(pal: Palette) -> list[Part]:
    """The windmill's static body: a tapered tower and a hub (rotationally symmetric)."""
    import trimesh

    hx, hy, hz = WINDMILL_HUB
    top, height = hy + 0.03, hy + 0.03 - GROUND_Y
    m = trimesh.creation.box(extents=(0.16, height, 0.16))
    local = np.asarray(m.vertices).copy()
    taper = 1.0 - 0.45 * (local[:, 1] + height / 2) / height  # narrower at the top
    local[:, [0, 2]] *= taper[:, None]
    v = local + [hx, top - height / 2, hz - 0.1]
    a, b = pal.color(0.07, 0.3, 0.85), pal.color(0.05, 0.55, 0.55)
    wall = make_part(
        "tower", v, np.asarray(m.faces),
        lambda p: tx.mix(a, b, tx.stripes(p, (0.0, 1.0, 0.0), 0.09, duty=0.25)) * pal.shade(p, 7.0, 0.25)[:, None],
        local,
    )
    h = trimesh.creation.cylinder(radius=0.045, height=0.12, sections=20)
    hv = np.asarray(h.vertices) + [hx, hy, hz - 0.04]
    hub_color = np.array([0.25, 0.22, 0.2], np.float32)
    hub = make_part("hub", hv, np.asarray(h.faces), lambda p: np.broadcast_to(hub_color, (len(p), 3)).copy())
    return [wall, hub]


def water_rim(pal: Palette) -> list[Part]:
    """A low stone kerb around the water pool (four thin boxes)."""
    import trimesh

    cx, cz = POOL_CENTER
    sx, sz = POOL_SIZE
    w, h = 0.05, 0.035
    stone_a, stone_b = np.array([0.7, 0.68, 0.64], np.float32), np.array([0.5, 0.48, 0.46], np.float32)
    parts = []
    for ext, off in [
        ((sx + 2 * w, h, w), (cx, GROUND_Y + h / 2, cz - sz / 2 - w / 2)),
        ((sx + 2 * w, h, w), (cx, GROUND_Y + h / 2, cz + sz / 2 + w / 2)),
        ((w, h, sz), (cx - sx / 2 - w / 2, GROUND_Y + h / 2, cz)),
        ((w, h, sz), (cx + sx / 2 + w / 2, GROUND_Y + h / 2, cz)),
    ]:
        m = trimesh.creation.box(extents=ext)
        v = np.asarray(m.vertices) + off
        parts.append(make_part("kerb", v, np.asarray(m.faces), lambda p: tx.mix(stone_a, stone_b, tx.checker(p, 0.07, (0, 2)))))
    return parts


# --------------------------------------------------------------------------- the scene
class SyntheticScene:
    """Static parts built once + moving parts per frame.

    Args:
        scene: one of `SCENE_KINDS` ("flag", "windmill", "water", "all").
        period: P, the motion period in frames (>= 2) at the mean tempo.
        seed: palette, noise, tempo-drift and gust seed.
        motion: "periodic" (exactly repeating every P frames) or "natural" (drifting
            tempo, gusts of amplitude; see `motion.MotionSchedule`).
        frames: N, the capture's length (natural motion's time scales and mean amplitude).
        tempo_drift, gust: peak relative tempo / amplitude deviations of natural motion.
    """

    def __init__(
        self,
        scene: str = "flag",
        period: int = 24,
        seed: int = 0,
        motion: str = "periodic",
        frames: int = 240,
        tempo_drift: float = 0.15,
        gust: float = 0.3,
        backdrop: str = "near",
    ) -> None:
        self.scene = scene
        self.backdrop = backdrop
        self.background = BACKGROUND if backdrop == "near" else far_panorama
        """What `raycast.render_view` shows where a ray hits nothing (see `BACKDROPS`)."""
        self.kinds = SCENE_KINDS[scene]
        self.period = int(period)
        self.schedule = movers.MotionSchedule(motion, self.period, int(frames), int(seed), float(tempo_drift), float(gust))
        self.palette = Palette(seed)
        pal = self.palette
        self.static_parts: list[Part] = [ground(pal), crate(pal), drum(pal), ball(pal)]
        if self.backdrop == "near":
            self.static_parts.insert(1, backdrop_wall(pal))
        if "flag" in self.kinds:
            self.static_parts.append(flag_pole(pal))
        if "windmill" in self.kinds:
            self.static_parts += windmill_tower(pal)
        if "water" in self.kinds:
            self.static_parts += water_rim(pal)
        self._movers = [getattr(movers, kind) for kind in self.kinds]

    def phase(self, frame: int) -> float:
        """Loop phase in [0, 1) of integer frame `frame` (periodic: (frame mod P) / P, exact for k and k + P)."""
        return self.schedule.phase(frame)

    def amplitude(self, frame: int) -> float:
        """Motion amplitude factor of integer frame `frame` (1 when periodic)."""
        return self.schedule.amplitude(frame)

    def moving_parts_at(self, phase: float, amplitude: float = 1.0) -> list[Part]:
        """The moving parts' meshes at loop phase `phase` in [0, 1) and amplitude factor `amplitude`."""
        parts: list[Part] = []
        for mover in self._movers:
            parts += mover(float(phase), self.palette, float(amplitude))
        return parts

    def moving_parts(self, frame: int) -> list[Part]:
        """The moving parts' meshes at integer frame `frame` (the schedule's phase and amplitude)."""
        return self.moving_parts_at(self.phase(frame), self.amplitude(frame))

    def parts_at(self, phase: float, amplitude: float = 1.0) -> list[Part]:
        """Every part at loop phase `phase` and amplitude `amplitude`: static ones, then moving ones."""
        return self.static_parts + self.moving_parts_at(phase, amplitude)

    def parts(self, frame: int) -> list[Part]:
        """Every part at frame `frame`: the static ones then the moving ones."""
        return self.static_parts + self.moving_parts(frame)
