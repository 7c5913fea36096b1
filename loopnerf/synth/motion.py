"""The moving parts of the synthetic scene, as functions of the loop phase and amplitude.

Each mover maps a loop phase `phase` in [0, 1), the scene's `Palette` and an amplitude
factor `amplitude` (1 = the nominal motion) to a list of `Part`s whose vertices are that
instant's world positions. Every displacement is a sum of terms periodic in `phase` with
period 1 (whole-number multiples of 2 pi phase); the textures are evaluated in material
space (the rest pose), so patterns travel with the moving surfaces.

Which phase and amplitude frame k shows is the `MotionSchedule`'s business:
- `periodic`: phase (k mod P) / P, amplitude 1: the motion repeats exactly every P frames;
- `natural`: a tempo that drifts and gusts of amplitude, like wind (see `MotionSchedule`).

- `flag`: a 0.9 x 0.5 cloth on a pole, displaced along Z by a travelling wave
  (wavelength 0.5, amplitude growing linearly from 0 at the pole to 0.09 at the
  free edge, plus a second harmonic), rebuilt per frame on a 36 x 20 grid.
- `windmill`: four identical blades turning about a horizontal axis by one blade
  spacing (90 degrees) per period, so the picture repeats after P frames.
- `water`: a 0.5 x 0.4 pool surface with circular ripples from two sources
  (wavelength 0.15, amplitude 0.006) whose tile texture is shifted by the surface
  slope (a cheap refraction look), so the ripples show in colour, not just shading.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from loopnerf.synth import textures as tx
from loopnerf.synth.parts import FLAG_ROOT, FLAG_SIZE, GROUND_Y, POOL_CENTER, POOL_SIZE, WINDMILL_HUB, Palette, Part, grid_faces, grid_normals, make_part

TWO_PI = 2.0 * np.pi



MOTIONS = ("natural", "periodic")


@dataclass(frozen=True)
class MotionSchedule:
    """Which state of the motion cycle each frame shows: phase and amplitude per frame.

    `periodic`: frame k shows phase (k mod P) / P (computed from the integer, so frames k
    and k + P are bit-identical) at amplitude 1.

    `natural` (wind is never a metronome): the tempo drifts and the amplitude gusts.
      - tempo: frame k advances the phase by (1 + d(k)) / P, d(k) a sum of two slow
        sinusoids (periods 0.4-0.9 x `frames`, random phases) scaled so that max |d| =
        `tempo_drift`; the phase is the running sum (phase(0) = 0), so frame k + P is
        several frames of the cycle away from frame k after a while;
      - gusts: amplitude a(k) = 1 + g(k), g a sum of two sinusoids of 30-90 frame periods
        scaled so that max |g| = `gust` over the capture, then divided by its mean over
        frames 0..frames-1 so the *mean amplitude is exactly 1*; the uniform ground-truth
        cycle is drawn at amplitude 1.
    Both are smooth deterministic functions of k (seeded by `seed`), defined for any k >= 0.

    Attributes:
        kind: "natural" or "periodic".
        period: P, frames per cycle at the mean tempo.
        frames: N, the capture's length (sets the drift's time scales and the mean amplitude).
        seed: seed of the drift and gusts (independent of the camera path's random stream).
        tempo_drift: peak relative tempo deviation (natural only; 0.15 = +-15 %).
        gust: peak relative amplitude deviation before normalising (natural only).
    """

    kind: str = "periodic"
    period: int = 24
    frames: int = 240
    seed: int = 0
    tempo_drift: float = 0.15
    gust: float = 0.3

    def __post_init__(self) -> None:
        if self.kind not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, got {self.kind!r}")
        rng = np.random.default_rng([self.seed, 1117])
        n = max(int(self.frames), 2)
        object.__setattr__(self, "_drift_periods", rng.uniform(0.4, 0.9, 2) * n)
        object.__setattr__(self, "_drift_phases", rng.uniform(0.0, TWO_PI, 2))
        object.__setattr__(self, "_gust_periods", rng.uniform(30.0, 90.0, 2))
        object.__setattr__(self, "_gust_phases", rng.uniform(0.0, TWO_PI, 2))
        k = np.arange(n, dtype=np.float64)
        d = self._raw(k, self._drift_periods, self._drift_phases)
        g = self._raw(k, self._gust_periods, self._gust_phases)
        object.__setattr__(self, "_drift_scale", self.tempo_drift / max(np.abs(d).max(), 1e-12))
        object.__setattr__(self, "_gust_scale", self.gust / max(np.abs(g).max(), 1e-12))
        object.__setattr__(self, "_gust_mean", float((1.0 + self._gust_scale * g).mean()))

    @staticmethod
    def _raw(k: np.ndarray, periods: np.ndarray, phases: np.ndarray) -> np.ndarray:
        return np.sin(TWO_PI * k[:, None] / periods[None] + phases[None]).sum(axis=1)

    def tempo(self, k) -> np.ndarray:
        """[len(k)] relative tempo 1 + d(k) of frames k (1 everywhere when periodic)."""
        k = np.atleast_1d(np.asarray(k, dtype=np.float64))
        if self.kind == "periodic":
            return np.ones_like(k)
        return 1.0 + self._drift_scale * self._raw(k, self._drift_periods, self._drift_phases)

    def cycles(self, frame: int) -> float:
        """Unwrapped phase of integer frame `frame` in cycles (frame / P when periodic)."""
        f = int(frame)
        if f < 0:
            raise ValueError(f"frame must be >= 0, got {frame}")
        if self.kind == "periodic":
            return f / self.period
        return float(self.tempo(np.arange(f)).sum()) / self.period

    def phase(self, frame: int) -> float:
        """Loop phase in [0, 1) of integer frame `frame`."""
        if self.kind == "periodic":
            return (int(frame) % self.period) / self.period
        return self.cycles(frame) % 1.0

    def amplitude(self, frame: int) -> float:
        """Amplitude factor of integer frame `frame` (1 when periodic; mean 1 over the capture)."""
        if self.kind == "periodic":
            return 1.0
        g = self._raw(np.array([float(frame)]), self._gust_periods, self._gust_phases)[0]
        return float((1.0 + self._gust_scale * g) / self._gust_mean)


def flag(phase: float, pal: Palette, amplitude: float = 1.0) -> list[Part]:
    """The waving flag at loop phase `phase` in [0, 1); `amplitude` scales the wave's height."""
    width, height = FLAG_SIZE
    nu, nv = 36, 20
    s, h = np.meshgrid(np.linspace(0.0, width, nu), np.linspace(0.0, height, nv), indexing="ij")
    wavelength, amp = 0.5, 0.09 * amplitude
    grow = s / width  # the edge on the pole stays put
    arg = TWO_PI * (s / wavelength + 0.15 * h / height - phase)
    dz = amp * grow * (np.sin(arg) + 0.3 * np.sin(2.0 * arg + 1.0))
    # the cloth shortens a little where it bends, so it does not look stretched
    dx = -0.25 * amp * grow * (1.0 - np.cos(2.0 * arg))
    dy = -0.02 * grow**2 * (1.0 + 0.5 * np.sin(arg + 0.5))  # slight droop of the free corner
    p = np.stack([FLAG_ROOT[0] + s + dx, FLAG_ROOT[1] + h + dy, FLAG_ROOT[2] + dz], -1)
    tex = np.stack([s, h, np.zeros_like(s)], -1)
    bands = np.stack([pal.color(0.62, 0.8, 0.7), pal.color(0.0, 0.0, 0.95), pal.color(0.98, 0.8, 0.8)])
    emblem = pal.color(0.14, 0.9, 0.95)

    def albedo(q):
        band = np.clip((q[:, 0] / width * 3.0).astype(np.int64), 0, 2)
        c = bands[band]
        stripe = tx.stripes(q, (0.0, 1.0, 0.0), height / 5.0, duty=0.5) * (band == 1)
        c = tx.mix(c, bands[0] * 0.8 + 0.2, stripe * 0.6)
        r = np.hypot(q[:, 0] - width / 2, q[:, 1] - height / 2)
        ring = ((r < 0.11) & (r > 0.06)).astype(np.float32)
        return tx.mix(c, emblem, ring)

    return [make_part("flag", p.reshape(-1, 3), grid_faces(nu, nv), albedo, tex.reshape(-1, 3), grid_normals(p), moving=True)]


def windmill(phase: float, pal: Palette, amplitude: float = 1.0, blades: int = 4) -> list[Part]:
    """The windmill's blades at loop phase `phase`: turned by phase * 360 / blades degrees.

    A turning rotor has no amplitude: `amplitude` is accepted and ignored (gusts show as
    tempo only)."""
    r0, r1 = 0.05, 0.28  # blade span along its radius (tips stay clear of the backdrop)
    nr = 8
    r = np.linspace(r0, r1, nr)
    half_w = 0.02 + 0.04 * (r - r0) / (r1 - r0)  # blades widen towards the tip
    # one blade in its own frame: radius along +X, width along +Y, a slight pitch in Z
    pitch = np.deg2rad(15.0)
    quad = []
    for side in (-1.0, 1.0):
        w = side * half_w
        quad.append(np.stack([r, w * np.cos(pitch), w * np.sin(pitch)], -1))
    blade = np.stack(quad, 1)  # [nr, 2, 3]
    tex_blade = np.stack([r[:, None].repeat(2, 1), np.stack([-half_w, half_w], 1), np.zeros((nr, 2))], -1)
    faces = grid_faces(nr, 2)
    red, white = pal.color(0.0, 0.7, 0.8), np.array([0.93, 0.92, 0.88], np.float32)

    def albedo(q):
        return tx.mix(red, white, tx.stripes(q, (1.0, 0.0, 0.0), 0.08, duty=0.5))

    verts, texs, fs = [], [], []
    base = TWO_PI * phase / blades
    for b in range(blades):
        a = base + TWO_PI * b / blades
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        verts.append(blade.reshape(-1, 3) @ rot.T + WINDMILL_HUB)
        texs.append(tex_blade.reshape(-1, 3))  # identical material space: blades look alike
        fs.append(faces + b * 2 * nr)
    return [make_part("blades", np.concatenate(verts), np.concatenate(fs), albedo, np.concatenate(texs), moving=True)]


def water(phase: float, pal: Palette, amplitude: float = 1.0) -> list[Part]:
    """The rippling pool surface at loop phase `phase`; `amplitude` scales the ripples."""
    (cx, cz), (sx, sz) = POOL_CENTER, POOL_SIZE
    nx, nz = 40, 32
    x, z = np.meshgrid(np.linspace(cx - sx / 2, cx + sx / 2, nx), np.linspace(cz - sz / 2, cz + sz / 2, nz), indexing="ij")
    wavelength, amp = 0.15, 0.006 * amplitude
    height = np.zeros_like(x)
    grad_x = np.zeros_like(x)
    grad_z = np.zeros_like(x)
    for (ox, oz), weight, harmonic in [((cx - 0.1, cz - 0.05), 1.0, 1), ((cx + 0.15, cz + 0.1), 0.6, 2)]:
        dxs, dzs = x - ox, z - oz
        rr = np.hypot(dxs, dzs) + 1e-9
        arg = TWO_PI * (rr / wavelength * harmonic - harmonic * phase)
        height += weight * amp * np.sin(arg)
        slope = weight * amp * np.cos(arg) * TWO_PI * harmonic / wavelength
        grad_x += slope * dxs / rr
        grad_z += slope * dzs / rr
    # fade the ripples to zero at the kerb so the surface meets it
    fade = np.sin(np.pi * (x - (cx - sx / 2)) / sx) * np.sin(np.pi * (z - (cz - sz / 2)) / sz)
    y = GROUND_Y + 0.012 + fade * height
    p = np.stack([x, y, z], -1)
    shift = 0.12  # refraction-like offset of the tiles seen through the water, per unit slope
    tex = np.stack([x + shift * fade * grad_x, np.zeros_like(x), z + shift * fade * grad_z], -1)
    deep, light = pal.color(0.55, 0.8, 0.55), pal.color(0.5, 0.45, 0.9)

    def albedo(q):
        c = tx.mix(deep, light, tx.checker(q, 0.06, axes=(0, 2)) * 0.7)
        return c * pal.shade(q, 10.0, 0.2)[:, None]

    return [make_part("water", p.reshape(-1, 3), grid_faces(nx, nz), albedo, tex.reshape(-1, 3), grid_normals(p), moving=True)]
