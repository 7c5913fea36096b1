"""A handheld-style camera path: still stretches joined by smooth orbiting moves.

The camera orbits `scene.LOOK_AT` on a sphere, parameterised by azimuth (degrees,
0 = on the +Z side, positive towards +X), elevation (degrees above the horizontal)
and radius (world units), and always looks at the centre (with +Y up). The path is

    still 0, move 0, still 1, move 1, ..., still n-1

with n = 3 or 4 still stretches of 40-60 frames (a tripod-ish hold with tiny
jitter) and moves of 20-40 frames that change the azimuth by 20-40 degrees (the
whole path centred on azimuth 0 +- 5 degrees), the elevation (15-30 degrees) and
the radius (2.5-2.9) with a cosine ease-in/out. When `frames` cannot hold
those ranges (short test captures), every length is scaled by the same factor.

On top of every frame (still or moving) sits a smooth handheld jitter: a sum of three
slow sinusoids per axis on the camera position and on the look-at point, each of peak
amplitude `JITTER * SCENE_SIZE` (a few 1e-4 of the scene size), so the still
stretches are still to within ~1e-3 scene sizes but not bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopnerf.synth.parts import LOOK_AT

SCENE_SIZE = 2.0  # world units across the scene (the box is about [-1, 1]^3)
JITTER = 2e-4  # peak amplitude of each of the 3 jitter sinusoids, in scene sizes
STILL_RANGE = (40, 60)  # frames per still stretch
MOVE_RANGE = (20, 40)  # frames per move


@dataclass(frozen=True)
class OrbitPoint:
    """A camera on the orbit: azimuth and elevation in degrees, radius in world units."""

    azimuth: float
    elevation: float
    radius: float

    def as_array(self) -> np.ndarray:
        return np.array([self.azimuth, self.elevation, self.radius])


@dataclass
class CameraPath:
    """The sampled path.

    Attributes:
        c2w: [N, 4, 4] float64 camera-to-world, OpenGL axes.
        stills: [(start, stop)] frame ranges of the still stretches (stop exclusive).
        holds: the orbit point of each still stretch (before jitter).
    """

    c2w: np.ndarray
    stills: list
    holds: list


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """[4, 4] camera-to-world (OpenGL: -Z looks from `eye` to `target`, +Y up-ish)."""
    eye = np.asarray(eye, float)
    f = np.asarray(target, float) - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, u, -f, eye
    return m


def orbit_pose(p: OrbitPoint | np.ndarray, target=LOOK_AT) -> np.ndarray:
    """[4, 4] camera-to-world of a camera at orbit point `p` looking at `target`."""
    az, el, rad = p.as_array() if isinstance(p, OrbitPoint) else np.asarray(p, float)
    a, e = np.deg2rad(az), np.deg2rad(el)
    eye = np.asarray(target) + rad * np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    return look_at(eye, target)


def segment_lengths(frames: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Lengths of the still stretches and of the moves, summing to `frames`.

    Picks 3 or 4 stills (whichever fits `frames` in the nominal ranges; at random if
    both do), draws each length uniformly in its range and then spreads the surplus or
    deficit over the segments in proportion to their room, so every length stays in its
    (possibly scaled) range.
    """
    def fits(n: int) -> bool:
        return n * STILL_RANGE[0] + (n - 1) * MOVE_RANGE[0] <= frames <= n * STILL_RANGE[1] + (n - 1) * MOVE_RANGE[1]

    counts = [n for n in (3, 4) if fits(n)]
    if counts:
        n = int(rng.choice(counts))
        scale = 1.0
    else:  # too short or too long for the nominal ranges: scale them
        n = 3
        nominal = n * sum(STILL_RANGE) / 2 + (n - 1) * sum(MOVE_RANGE) / 2
        scale = frames / nominal
    lo = np.array([STILL_RANGE[0]] * n + [MOVE_RANGE[0]] * (n - 1), float) * scale
    hi = np.array([STILL_RANGE[1]] * n + [MOVE_RANGE[1]] * (n - 1), float) * scale
    lengths = lo + rng.random(len(lo)) * (hi - lo)
    surplus = frames - lengths.sum()
    room = (hi - lengths) if surplus > 0 else (lengths - lo)
    lengths += surplus * room / max(room.sum(), 1e-9)
    ints = np.maximum(np.floor(lengths).astype(int), 1)
    # hand the rounding remainder to the segments with the largest fractional parts
    order = np.argsort(-(lengths - np.floor(lengths)))
    i = 0
    while ints.sum() < frames:
        ints[order[i % len(order)]] += 1
        i += 1
    while ints.sum() > frames:
        j = int(np.argmax(ints))
        ints[j] -= 1
    return ints[:n].tolist(), ints[n:].tolist()


def smooth_jitter(frames: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """[frames, 3] handheld shake: per axis three sinusoids of 20-120 frame periods, each of peak `amplitude`."""
    t = np.arange(frames, dtype=float)[:, None, None]
    periods = rng.uniform(20.0, 120.0, (1, 3, 3))
    phases = rng.uniform(0.0, 2 * np.pi, (1, 3, 3))
    return amplitude * np.sin(2 * np.pi * t / periods + phases).sum(axis=2)


def make_camera_path(frames: int, rng: np.random.Generator) -> CameraPath:
    """Sample the path of `frames` frames (see the module docstring)."""
    still_len, move_len = segment_lengths(frames, rng)
    n = len(still_len)
    turns = rng.uniform(20.0, 40.0, n - 1)  # degrees of orbit per move
    # centre the path on the front of the scene (azimuth 0), give or take 5 degrees
    az = -0.5 * turns.sum() + rng.uniform(-5.0, 5.0)
    holds = []
    for i in range(n):
        if i:
            az += turns[i - 1]
        holds.append(OrbitPoint(float(az), float(rng.uniform(15.0, 30.0)), float(rng.uniform(2.5, 2.9))))
    params = []
    stills = []
    frame = 0
    for i in range(n):
        stills.append((frame, frame + still_len[i]))
        params += [holds[i].as_array()] * still_len[i]
        frame += still_len[i]
        if i < n - 1:
            a, b = holds[i].as_array(), holds[i + 1].as_array()
            m = move_len[i]
            for j in range(m):
                x = (j + 1) / (m + 1)
                ease = 0.5 - 0.5 * np.cos(np.pi * x)  # zero velocity at both ends
                params.append(a + ease * (b - a))
            frame += m
    amp = JITTER * SCENE_SIZE
    eye_shake = smooth_jitter(frames, rng, amp)
    target_shake = smooth_jitter(frames, rng, amp)
    c2w = np.stack([orbit_pose(p, LOOK_AT) for p in params])
    # shake: move the eye, and aim at a slightly moved target
    for f in range(frames):
        eye = c2w[f, :3, 3] + eye_shake[f]
        c2w[f] = look_at(eye, LOOK_AT + target_shake[f])
    return CameraPath(c2w=c2w, stills=stills, holds=holds)


def mean_pose(c2w: np.ndarray) -> np.ndarray:
    """[4, 4] average of poses [N, 4, 4]: mean centre, rotation = nearest rotation to the mean matrix."""
    r = c2w[:, :3, :3].mean(0)
    u, _, vt = np.linalg.svd(r)
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        u[:, -1] *= -1
        rot = u @ vt
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = c2w[:, :3, 3].mean(0)
    return m


def ground_truth_cameras(path: CameraPath) -> dict:
    """The three ground-truth cameras, name -> (c2w [4, 4], description).

    - `supervised`: the mean pose of the longest still stretch (the first of equals), i.e.
      a view the capture holds still at, and the one `loopnerf select` / `eval` / `bake`
      take as the default view (their longest segment);
    - `novel`: halfway (azimuth, radius) between still stretches 0 and 1, 3 degrees
      higher: the moving camera only sweeps past it;
    - `extrapolated`: 15 degrees of azimuth past the last still stretch and 8 degrees
      higher, 10% closer: outside the path.
    """
    mid = int(np.argmax([b - a for a, b in path.stills]))
    s0, s1 = path.stills[mid]
    a, b = path.holds[0].as_array(), path.holds[1].as_array()
    novel = 0.5 * (a + b) + np.array([0.0, 3.0, 0.0])
    last = path.holds[-1].as_array()
    extra = np.array([last[0] + 15.0, max(h.elevation for h in path.holds) + 8.0, last[2] * 0.9])
    return {
        "supervised": (mean_pose(path.c2w[s0:s1]), f"mean pose of the longest still stretch, {mid} (frames {s0}-{s1 - 1})"),
        "novel": (orbit_pose(novel), "between still stretches 0 and 1 (mid azimuth and radius, 3 degrees higher)"),
        "extrapolated": (
            orbit_pose(extra),
            "15 degrees of azimuth past the last still stretch, 8 degrees above the highest, 10% closer",
        ),
    }
