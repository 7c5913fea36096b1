"""Tests of the built-in synthetic capture (`loopnerf synth`, `loopnerf.synth`)."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from loopnerf.data.capture import Intrinsics
from loopnerf.errors import ConfigError
from loopnerf.synth import camera_path
from loopnerf.synth.command import GT_CAMERAS, SynthConfig, make_synthetic_capture, write_synthetic_capture
from loopnerf.synth.raycast import render_view
from loopnerf.synth.scene import AMBIENT, BACKGROUND, LIGHT_DIR, SCENE_BOX, SyntheticScene, make_part

SMALL = SynthConfig(scene="all", frames=60, size=48, period=12, seed=3, motion="periodic")
NATURAL = SynthConfig(scene="flag", frames=60, size=32, period=12, seed=3, supersample=1)


@pytest.fixture(scope="module")
def small():
    """(capture, gt) of a 48 px, 60-frame synthetic capture with every moving part."""
    return make_synthetic_capture(SMALL)


@pytest.fixture(scope="module")
def natural():
    """(capture, gt) of a 32 px, 60-frame flag capture with natural (default) motion."""
    assert NATURAL.motion == "natural"  # the default
    return make_synthetic_capture(NATURAL)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in radians between the rotation parts of two poses."""
    r = a[:3, :3].T @ b[:3, :3]
    return float(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))


# ----------------------------------------------------------------------------- renderer
def test_renderer_known_shading_and_shadow():
    """A grey quad seen from straight above: lit pixels = albedo (AMBIENT + (1 - AMBIENT) n.l),
    pixels in the shadow of a small occluder = albedo * AMBIENT, misses = background."""
    grey = np.array([0.5, 0.5, 0.5], np.float32)
    quad = make_part(
        "quad",
        [[-1, 0, -1], [-1, 0, 1], [1, 0, 1], [1, 0, -1]],
        [[0, 1, 2], [0, 2, 3]],
        lambda p: np.broadcast_to(grey, (len(p), 3)).copy(),
    )
    # an occluder high above the quad on the light's side casts a shadow at the origin region
    centre = 0.5 * np.asarray(LIGHT_DIR) / LIGHT_DIR[1]  # on the ray from (0, 0, 0) to the light, at y = 0.5
    s = 0.15
    occ = make_part(
        "occluder",
        [[centre[0] + a, 0.5, centre[2] + b] for a, b in [(-s, -s), (-s, s), (s, s), (s, -s)]],
        [[0, 1, 2], [0, 2, 3]],
        lambda p: np.zeros((len(p), 3), np.float32),
    )
    # camera at (0.6, 3, 0.6) looking straight down (-Y), +Y of the image = -Z of the world
    c2w = np.eye(4)
    c2w[:3, :3] = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # columns: right (+X), up (-Z), back (+Y)
    c2w[:3, 3] = [0.6, 3.0, 0.6]
    k = Intrinsics(40.0, 40.0, 32.0, 32.0, 64, 64)
    img = render_view([quad, occ], c2w, k, supersample=1)
    lit = 0.5 * (AMBIENT + (1 - AMBIENT) * LIGHT_DIR[1])
    # pixel (30, 30) sees world point 0.6 + (30.5 - 32) / 40 * 3 = 0.4875 in x and z: inside
    # the quad, away from the shadow
    u = v = 30
    np.testing.assert_allclose(img[v, u], lit, atol=1e-5)
    # world origin: in the occluder's shadow (the occluder itself is not in view there)
    u0 = v0 = 24  # its ray: pixel centre 24.5 -> world offset (24.5 - 32) / 40 * 3 = -0.56
    np.testing.assert_allclose(img[v0, u0], 0.5 * AMBIENT, atol=1e-5)
    # beyond the quad's edge x = 1: background
    np.testing.assert_allclose(img[32, 63], BACKGROUND, atol=1e-6)


# ----------------------------------------------------------------------------- periodic motion
def test_fixed_camera_sees_exactly_periodic_frames(small):
    capture, gt = small
    period = gt["period"]
    scene = SyntheticScene(SMALL.scene, period, SMALL.seed)
    k = capture.intrinsics[0]
    c2w = capture.c2w[0]
    for f in (0, 5):
        a = render_view(scene.parts(f), c2w, k, supersample=1)
        b = render_view(scene.parts(f + period), c2w, k, supersample=1)
        c = render_view(scene.parts(f + 3 * period), c2w, k, supersample=1)
        assert np.abs(a - b).max() <= 1 / 255
        assert np.abs(a - c).max() <= 1 / 255
    # ... while half a period later the picture has changed (so the test above can fail)
    half = render_view(scene.parts(period // 2), c2w, k, supersample=1)
    assert np.abs(half - render_view(scene.parts(0), c2w, k, supersample=1)).max() > 0.1


def test_gt_frames_match_capture_frames_of_same_phase(small):
    """The gt camera 'supervised' rendered at frame k + P equals its gt frame k."""
    capture, gt = small
    period = gt["period"]
    scene = SyntheticScene(SMALL.scene, period, SMALL.seed)
    cam = gt["cameras"]["supervised"]
    again = render_view(scene.parts(3 + 2 * period), cam["c2w"], cam["intrinsics"], supersample=SMALL.supersample)
    again = (np.clip(again, 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.abs(again.astype(int) - cam["frames"][3].astype(int)).max() <= 1


def test_moving_mask_covers_the_changes(small):
    _, gt = small
    for name in GT_CAMERAS:
        cam = gt["cameras"][name]
        frames = cam["frames"].astype(int)
        change = np.abs(frames - frames[:1]).max(axis=(0, 3))
        assert cam["mask"].dtype == bool and cam["mask"].shape == frames.shape[1:3]
        np.testing.assert_array_equal(cam["mask"], change > 2)
        frac = cam["mask"].mean()
        assert 0.005 < frac < 0.5, f"{name}: moving fraction {frac}"


# ----------------------------------------------------------------------------- camera path
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_segment_lengths_in_range_for_default_frames(seed):
    stills, moves = camera_path.segment_lengths(240, np.random.default_rng(seed))
    assert len(stills) in (3, 4) and len(moves) == len(stills) - 1
    assert sum(stills) + sum(moves) == 240
    assert all(40 <= s <= 60 for s in stills), stills
    assert all(20 <= m <= 40 for m in moves), moves


def test_still_stretches_are_still_and_moves_move(small):
    capture, gt = small
    c2w = capture.c2w
    stills = gt["still_segments"]
    assert stills[0][0] == 0 and stills[-1][1] == len(capture)
    for (a, b), (c, _) in zip(stills, stills[1:]):
        assert b < c  # a move between consecutive stills
    size = camera_path.SCENE_SIZE
    mean_poses = []
    for a, b in stills:
        seg = c2w[a:b]
        mean = camera_path.mean_pose(seg)
        mean_poses.append(mean)
        drift = np.linalg.norm(seg[:, :3, 3] - mean[:3, 3], axis=1).max()
        assert 0 < drift < 1e-3 * size, drift  # handheld jitter: present, a few 1e-4 of the scene
        assert max(rotation_angle(p, mean) for p in seg) < 1e-3
        steps = np.linalg.norm(np.diff(seg[:, :3, 3], axis=0), axis=1)
        assert steps.max() < 1e-4 * size
    for p, q in zip(mean_poses, mean_poses[1:]):
        deg = np.degrees(rotation_angle(p, q))
        assert 15 < deg < 60, deg  # tens of degrees of orbit between still stretches
    # every camera looks at the scene centre (within the jitter)
    to_centre = camera_path.LOOK_AT - c2w[:, :3, 3]
    to_centre /= np.linalg.norm(to_centre, axis=1, keepdims=True)
    assert np.einsum("ni,ni->n", to_centre, -c2w[:, :3, 2]).min() > 0.9999


def test_ground_truth_cameras(small):
    capture, gt = small
    stills = gt["still_segments"]
    cams = gt["cameras"]
    centres = capture.c2w[:, :3, 3]
    # supervised: the mean pose of a still stretch
    sup = cams["supervised"]["c2w"]
    assert any(np.linalg.norm(centres[a:b] - sup[:3, 3], axis=1).max() < 2e-3 for a, b in stills)
    # novel: between still stretches 0 and 1 in azimuth, not at any still stretch
    still_centres = np.array([centres[a:b].mean(0) for a, b in stills])
    nov = cams["novel"]["c2w"][:3, 3]
    assert np.linalg.norm(still_centres - nov, axis=1).min() > 0.2

    def azimuth(p):
        d = p - camera_path.LOOK_AT
        return np.degrees(np.arctan2(d[0], d[2]))

    az_still = [azimuth(c) for c in still_centres]
    assert az_still[0] < azimuth(nov) < az_still[1]
    # extrapolated: beyond the whole path's azimuth range
    az_path = [azimuth(c) for c in centres]
    assert azimuth(cams["extrapolated"]["c2w"][:3, 3]) > max(az_path) + 5


# ----------------------------------------------------------------------------- output on disk
def test_written_capture_loads_through_nerfstudio(small, tmp_path):
    from loopnerf.data.nerfstudio import load_nerfstudio

    capture, gt = small
    write_synthetic_capture(tmp_path, capture, gt)
    loaded = load_nerfstudio(tmp_path)
    n = SMALL.frames
    assert len(loaded) == n and loaded.width == loaded.height == SMALL.size
    np.testing.assert_array_equal(loaded.images, capture.images)
    np.testing.assert_allclose(loaded.c2w, capture.c2w, atol=1e-12)
    np.testing.assert_allclose(loaded.times, np.arange(n) / (n - 1))
    np.testing.assert_array_equal(loaded.eval_idx, np.arange(5, n, 10))
    np.testing.assert_array_equal(loaded.train_idx, np.setdiff1d(np.arange(n), np.arange(5, n, 10)))
    np.testing.assert_allclose(loaded.box, SCENE_BOX)
    k = loaded.intrinsics[0]
    assert k == capture.intrinsics[0]
    np.testing.assert_allclose(k.fx, 0.5 * SMALL.size / np.tan(np.radians(SMALL.fov) / 2))
    assert loaded.meta["extra"]["loopnerf_synth"]["period_frames"] == SMALL.period

    # the gt folder is complete
    meta = json.loads((tmp_path / "gt" / "meta.json").read_text())
    assert meta["period_frames"] == SMALL.period and meta["scene"] == "all" and meta["seed"] == SMALL.seed
    assert meta["still_segments"] == gt["still_segments"]
    assert meta["gt_frame_times"] == pytest.approx([j / (n - 1) for j in range(SMALL.period)])
    assert set(meta["cameras"]) == set(GT_CAMERAS)
    for name, cam in meta["cameras"].items():
        np.testing.assert_allclose(cam["c2w"], gt["cameras"][name]["c2w"])
        assert cam["intrinsics"]["width"] == SMALL.size
        files = sorted(p.name for p in (tmp_path / "gt" / name).iterdir())
        assert files == [f"{j:05d}.png" for j in range(SMALL.period)] + ["mask.png"]
        for j in (0, SMALL.period - 1):
            np.testing.assert_array_equal(iio.imread(tmp_path / "gt" / cam["frames"][j]), gt["cameras"][name]["frames"][j])
        mask = iio.imread(tmp_path / "gt" / cam["mask"])
        np.testing.assert_array_equal(mask > 127, gt["cameras"][name]["mask"])


def test_deterministic_by_seed():
    cfg = SynthConfig(scene="flag", frames=12, size=16, period=4, seed=11, supersample=1)
    a, ga = make_synthetic_capture(cfg)
    b, gb = make_synthetic_capture(cfg)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.c2w, b.c2w)
    for name in GT_CAMERAS:
        np.testing.assert_array_equal(ga["cameras"][name]["frames"], gb["cameras"][name]["frames"])
    c, _ = make_synthetic_capture(SynthConfig(scene="flag", frames=12, size=16, period=4, seed=12, supersample=1))
    assert np.abs(c.c2w - a.c2w).max() > 1e-2


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_capture_and_rejects_bad_options(tmp_path, capsys):
    from loopnerf.cli import main

    out = tmp_path / "cap"
    tiny = ["--frames", "12", "--size", "16", "--period", "4", "--supersample", "1"]
    assert main(["synth", str(out), *tiny, "--scene", "windmill"]) == 0
    assert (out / "transforms.json").is_file() and len(list((out / "images").iterdir())) == 12
    assert (out / "gt" / "novel" / "mask.png").is_file()
    # a non-empty OUT without --overwrite, and impossible options: clean error, exit code 2
    assert main(["synth", str(out), "--frames", "12", "--size", "16", "--period", "4"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "b"), "--period", "1"]) == 2
    assert "period" in capsys.readouterr().err
    assert json.loads((out / "gt" / "meta.json").read_text())["motion"] == "natural"  # the default
    assert main(["synth", str(out), *tiny, "--overwrite", "--motion", "periodic"]) == 0
    assert json.loads((out / "gt" / "meta.json").read_text())["motion"] == "periodic"
    with pytest.raises(SystemExit) as bad:  # tyro rejects a value outside the choices
        main(["synth", str(out), *tiny, "--overwrite", "--motion", "sometimes"])
    assert bad.value.code == 2


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="frames"):
        SynthConfig(frames=8, period=24).check()
    with pytest.raises(ConfigError, match="scene"):
        SynthConfig(scene="volcano").check()
    with pytest.raises(ConfigError, match="size"):
        SynthConfig(size=4).check()


def test_value_noise_interpolates_its_lattice():
    from loopnerf.synth.textures import ValueNoise

    noise = ValueNoise(seed=5, size=8)
    lattice = np.array([[1.0, 2.0, 3.0], [7.0, 0.0, 4.0]])
    # at lattice points (offset by the +1000 shift, size 8) the noise is the table value
    want = [noise.table[(1000 + int(x)) % 8, (1000 + int(y)) % 8, (1000 + int(z)) % 8] for x, y, z in lattice]
    np.testing.assert_allclose(noise(lattice / 2.0, 2.0), want, atol=1e-6)
    # smooth: a tiny step changes the value a little
    p = np.random.default_rng(0).random((100, 3))
    assert np.abs(noise(p + 1e-4, 3.0) - noise(p, 3.0)).max() < 1e-2


def test_render_true_frames_reproduces_gt(small):
    from loopnerf.synth.command import render_true_frames

    _, gt = small
    cam = gt["cameras"]["extrapolated"]
    frames = render_true_frames(SMALL, cam["c2w"], [2, 2 + SMALL.period])
    np.testing.assert_array_equal(frames[0], cam["frames"][2])
    np.testing.assert_array_equal(frames[1], cam["frames"][2])


# ----------------------------------------------------------------------------- natural motion
def test_natural_schedule_drifts_and_gusts():
    """Natural motion: frame k + P is several frames of the cycle away from frame k somewhere,
    the amplitude varies slowly with mean exactly 1, and the phase advances smoothly."""
    from loopnerf.synth.motion import MotionSchedule

    p, n = 24, 240
    s = MotionSchedule("natural", p, n, seed=0)
    cyc = np.array([s.cycles(k) for k in range(n + p)])
    lag = (cyc[p:] - cyc[:-p]) * p - p  # phase change over P frames minus one cycle, in frames
    assert np.abs(lag).max() >= 2.0, np.abs(lag).max()
    drift = np.abs(cyc[:n] * p - np.arange(n)).max()
    assert drift >= 3.0, drift  # "by several frames over the capture"
    amp = np.array([s.amplitude(k) for k in range(n)])
    assert abs(amp.mean() - 1.0) < 1e-9 and amp.max() - amp.min() > 0.3
    assert np.abs(np.diff(amp)).max() < 0.05  # gusts are slow
    tempo = s.tempo(np.arange(n))
    assert (tempo > 0.8).all() and (tempo < 1.2).all()
    np.testing.assert_allclose([s.phase(k) for k in (0, 7, 100)], cyc[[0, 7, 100]] % 1.0)
    # periodic: exact phases (k mod P) / P at amplitude 1
    q = MotionSchedule("periodic", p, n, seed=0)
    assert [q.phase(k) for k in (3, 3 + p, 3 + 5 * p)] == [3 / p] * 3 and q.amplitude(77) == 1.0
    with pytest.raises(ValueError, match="motion"):
        MotionSchedule("jitter", p, n)


def test_natural_capture_does_not_repeat(natural):
    """At a fixed camera, frames k and k + P of natural motion differ (they are equal when periodic)."""
    capture, gt = natural
    assert gt["motion"] == "natural"
    scene = NATURAL.make_scene()
    c2w, k = gt["cameras"]["supervised"]["c2w"], capture.intrinsics[0]
    p = NATURAL.period
    worst = max(
        np.abs(render_view(scene.parts(f), c2w, k, supersample=1) - render_view(scene.parts(f + p), c2w, k, supersample=1)).max()
        for f in range(0, 40, 4)
    )
    assert worst > 0.1, worst


def test_natural_gt_cycle_is_the_uniform_cycle_at_mean_amplitude(natural):
    """gt/<camera> frames are phase k / P at amplitude 1: the same images as a periodic capture's."""
    _, gt = natural
    periodic = SynthConfig(**{**NATURAL.__dict__, "motion": "periodic"})
    scene = periodic.make_scene()
    cam = gt["cameras"]["novel"]
    for j in (0, 5):
        want = render_view(scene.parts(j), cam["c2w"], cam["intrinsics"], supersample=1)
        got = cam["frames"][j].astype(np.float64) / 255
        assert np.abs(got - want).max() <= 1 / 255 + 1e-6


def test_still_truth_is_what_the_capture_showed(natural, tmp_path):
    """gt stills: frame j of stretch s is the state of capture frame start + j, at the
    stretch's mean pose; written to gt/stills/NN/ with its mask and listed in meta.json."""
    from loopnerf.synth.camera_path import mean_pose
    from loopnerf.synth.command import render_true_frames

    capture, gt = natural
    assert [[s["start"], s["stop"]] for s in gt["stills"]] == gt["still_segments"]
    st = gt["stills"][1]
    np.testing.assert_allclose(st["c2w"], mean_pose(capture.c2w[st["start"] : st["stop"]]))
    assert st["frames"].shape == (st["stop"] - st["start"], NATURAL.size, NATURAL.size, 3)
    again = render_true_frames(NATURAL, st["c2w"], [st["start"], st["stop"] - 1])
    np.testing.assert_array_equal(again[0], st["frames"][0])
    np.testing.assert_array_equal(again[1], st["frames"][-1])
    assert 0.01 < st["mask"].mean() < 0.5
    # the stretch's own frames are not one phase: they drift against the uniform cycle
    assert len(set(np.round(np.diff(st["phases"]), 6))) > 1
    write_synthetic_capture(tmp_path, capture, gt)
    meta = json.loads((tmp_path / "gt" / "meta.json").read_text())
    assert meta["motion"] == "natural" and len(meta["stills"]) == len(gt["stills"])
    m1 = meta["stills"][1]
    np.testing.assert_array_equal(iio.imread(tmp_path / "gt" / m1["frames"][-1]), st["frames"][-1])
    np.testing.assert_array_equal(iio.imread(tmp_path / "gt" / m1["mask"]) > 127, st["mask"])
    assert m1["times"][0] == pytest.approx(st["start"] / (NATURAL.frames - 1))


def test_motion_options_are_checked():
    with pytest.raises(ConfigError, match="motion"):
        SynthConfig(motion="random").check()
    with pytest.raises(ConfigError, match="tempo_drift"):
        SynthConfig(tempo_drift=0.7).check()
    with pytest.raises(ConfigError, match="gust"):
        SynthConfig(gust=-0.1).check()
