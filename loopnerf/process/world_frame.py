"""From COLMAP's world-to-camera poses to LoopNeRF's camera-to-world, in a tidy world.

COLMAP gives `cam_from_world` = [R | t] mapping world points into camera coordinates
with OpenCV axes (x right, y down, z forward). LoopNeRF wants camera-to-world with
OpenGL axes (x right, y up, looking down -z): c2w = inverse([R | t]) with its y and z
columns negated.

COLMAP's world has an arbitrary origin, rotation and scale, so the capture is moved
into a normalised world (`normalising_transform`): the point the cameras look at
(`scene_centre`) is the origin, the cameras' mean up vector is +Y, the mean viewing direction points
along -Z (seen from above), and the median camera distance to the origin is
`CAMERA_DISTANCE` world units, as in the built-in synthetic capture, so default near
planes, scene boxes and step sizes fit.
"""

from __future__ import annotations

import numpy as np

from loopnerf.data.capture import look_at_point

CAMERA_DISTANCE = 2.5  # world units from the look-at point (the synthetic orbit is 2.5-2.9)
BOX_PERCENTILES = (2.0, 98.0)  # sparse points outside these (per axis) are outliers or far background
BOX_MARGIN = 0.1  # the box grows by this fraction of its size on every side
MIN_BOX_POINTS = 20
CONVERGE_MIN_DEG = 10.0  # viewing directions must spread this much for their crossing point to be trusted
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_w2c_to_opengl_c2w(cam_from_world: np.ndarray) -> np.ndarray:
    """[N, 3, 4] (or [N, 4, 4]) world-to-camera, OpenCV axes -> [N, 4, 4] camera-to-world, OpenGL axes."""
    w2c = np.asarray(cam_from_world, dtype=np.float64)
    n = len(w2c)
    r = w2c[:, :3, :3]
    t = w2c[:, :3, 3]
    c2w = np.zeros((n, 4, 4))
    c2w[:, :3, :3] = np.transpose(r, (0, 2, 1))
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", r, t)  # camera centre = -R^T t
    c2w[:, 3, 3] = 1.0
    return c2w @ OPENCV_TO_OPENGL


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[3, 3] the smallest rotation taking unit vector `a` onto unit vector `b`."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-12:  # opposite: turn half way round any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def scene_centre(c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[3] where the cameras look.

    When the viewing directions spread by more than `CONVERGE_MIN_DEG` from their mean
    and the point nearest to every optical axis lies in front of at least 80 % of the
    cameras (an object-centric capture), that point. Otherwise (a short handheld path,
    forward-facing views, nearly parallel axes, where that point is ill-defined): the
    point at the median depth of the sparse points ahead of the mean camera.
    """
    origins = c2w[:, :3, 3]
    forward = -c2w[:, :3, 2]
    mean_fwd = forward.mean(0)
    mean_fwd /= np.linalg.norm(mean_fwd)
    spread = np.degrees(np.arccos(np.clip(forward @ mean_fwd, -1.0, 1.0))).max()
    if spread > CONVERGE_MIN_DEG:
        centre = look_at_point(c2w)
        depth = np.einsum("ni,ni->n", centre[None] - origins, forward)
        if (depth > 0).mean() >= 0.8:
            return centre
    if len(points):
        d = float(np.median((points - origins.mean(0)) @ mean_fwd))
        if d > 0:
            return origins.mean(0) + d * mean_fwd
    return origins.mean(0) + mean_fwd


def normalising_transform(c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[4, 4] similarity (scale * rotation, translation) taking COLMAP's world to the
    normalised world described in the module docstring.

    Args:
        c2w: [N, 4, 4] camera-to-world, OpenGL axes, in COLMAP's world.
        points: [P, 3] sparse points in COLMAP's world (used only when the cameras do not
            converge on a point).
    """
    centre = scene_centre(c2w, points)
    up = c2w[:, :3, 1].mean(0)
    rot = rotation_between(up, np.array([0.0, 1.0, 0.0]))
    fwd = rot @ (-c2w[:, :3, 2].mean(0))
    heading = np.arctan2(fwd[0], -fwd[2])  # angle of the mean view from -Z, about +Y
    if np.hypot(fwd[0], fwd[2]) > 1e-6:
        c, s = np.cos(heading), np.sin(heading)
        yaw = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        rot = yaw @ rot
    dist = float(np.median(np.linalg.norm(c2w[:, :3, 3] - centre, axis=1)))
    scale = CAMERA_DISTANCE / max(dist, 1e-12)
    m = np.eye(4)
    m[:3, :3] = scale * rot
    m[:3, 3] = -scale * rot @ centre
    return m


def apply_transform(m: np.ndarray, c2w: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move cameras [N, 4, 4] and points [P, 3] by the similarity `m` [4, 4]; the camera
    rotations stay orthonormal (the scale only moves their centres)."""
    scale = float(np.cbrt(np.linalg.det(m[:3, :3])))
    rot = m[:3, :3] / scale
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[:, :3, :3] = rot[None] @ c2w[:, :3, :3]
    out[:, :3, 3] = c2w[:, :3, 3] @ m[:3, :3].T + m[:3, 3]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    return out, pts


def box_from_points(points: np.ndarray) -> "np.ndarray | None":
    """[2, 3] scene box (min corner, max corner) around the sparse points, or None when
    there are fewer than `MIN_BOX_POINTS`.

    Per axis, the `BOX_PERCENTILES` of the points, grown by `BOX_MARGIN` of the size on
    each side. An explicit box matters for video captures: with a short, nearly
    straight camera path the optical axes are almost parallel, the point nearest to all
    of them (the fallback box's centre) is ill-defined and can even lie behind the
    cameras, while the sparse points always sit where the scene is.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) < MIN_BOX_POINTS:
        return None
    lo = np.percentile(pts, BOX_PERCENTILES[0], axis=0)
    hi = np.percentile(pts, BOX_PERCENTILES[1], axis=0)
    size = np.maximum(hi - lo, 1e-3 * max(float((hi - lo).max()), 1e-6))
    return np.stack([lo - BOX_MARGIN * size, hi + BOX_MARGIN * size])
