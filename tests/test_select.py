"""Still-segment selection: made-up camera paths with known still stretches."""

import json

import numpy as np
import pytest

from loopnerf.errors import SelectionError
from loopnerf.data.still_segments import average_pose, euler_xyz_degrees, find_still_segments, path_deltas


def rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def small_rotation(rng, sigma_deg):
    """A random rotation of about sigma_deg degrees (Rodrigues)."""
    v = rng.normal(0.0, np.radians(sigma_deg), 3)
    a = np.linalg.norm(v)
    if a == 0:
        return np.eye(3)
    k = v / a
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def make_path(spec, *, jitter_t=0.0, jitter_r=0.0, seed=0):
    """Camera path from [("still", n) | ("move", n)] parts.

    Moving: the camera orbits the origin at radius 2, 1.5 deg of yaw per frame (looking at
    the centre), so both deltas are far above the thresholds. Still: the pose holds,
    with Gaussian jitter of jitter_t world units and jitter_r degrees per frame.
    Returns (c2w [N, 4, 4], [(start, stop) of each still part]).
    """
    rng = np.random.default_rng(seed)
    poses, still, yaw, frame = [], [], 0.0, 0
    for kind, n in spec:
        if kind == "still":
            still.append((frame, frame + n))
        for _ in range(n):
            if kind == "move":
                yaw += 1.5
            r = rot_y(yaw)
            c = r @ np.array([0.0, 0.0, 2.0])
            if kind == "still":
                r = r @ small_rotation(rng, jitter_r)
                c = c + rng.normal(0.0, jitter_t, 3)
            m = np.eye(4)
            m[:3, :3], m[:3, 3] = r, c
            poses.append(m)
            frame += 1
    return np.stack(poses), still


def assert_segments_match(found, expected, tol=3):
    assert len(found) == len(expected), ([(s.start, s.stop) for s in found], expected)
    for seg, (a, b) in zip(found, expected):
        assert abs(seg.start - a) <= tol and abs(seg.stop - b) <= tol, ((seg.start, seg.stop), (a, b))


SPEC = [("still", 60), ("move", 40), ("still", 70), ("move", 30), ("still", 55)]


@pytest.mark.parametrize("jitter_t,jitter_r", [(0.0, 0.0), (1e-4, 0.01), (2e-3, 0.05)])
def test_known_stretches_touching_start_and_end(jitter_t, jitter_r):
    c2w, expected = make_path(SPEC, jitter_t=jitter_t, jitter_r=jitter_r, seed=1)
    found = find_still_segments(c2w)
    assert expected[0][0] == 0 and expected[-1][1] == len(c2w)
    assert_segments_match(found, expected)
    assert found[0].start == 0 and found[-1].stop == len(c2w)


def test_back_to_back_stretches():
    # Two still stretches separated by a 4-frame move, then one after a single-frame jump.
    c2w, expected = make_path(
        [("still", 60), ("move", 4), ("still", 60)], jitter_t=1e-4, jitter_r=0.01, seed=2
    )
    found = find_still_segments(c2w)
    assert_segments_match(found, expected)
    a, b = make_path([("still", 60)], seed=3)[0], make_path([("move", 30), ("still", 60)], seed=4)[0][30:]
    jump = np.concatenate([a, b])
    assert_segments_match(find_still_segments(jump), [(0, 60), (60, 120)])


def test_short_still_stretch_is_dropped_and_min_length_counts():
    c2w, expected = make_path([("move", 20), ("still", 40), ("move", 20), ("still", 80), ("move", 10)], seed=5)
    assert_segments_match(find_still_segments(c2w, min_length=50), expected[1:])
    assert_segments_match(find_still_segments(c2w, min_length=30), expected)


def test_never_still_path_raises_with_a_working_suggestion():
    c2w, _ = make_path([("move", 200)])
    with pytest.raises(SelectionError) as info:
        find_still_segments(c2w)
    msg = str(info.value)
    assert "--rotation-threshold" in msg and "200-frame" in msg
    # The suggested rotation threshold (the smallest change) finds a segment; a bit less does not.
    value = float(msg.split("smallest change that finds one: --rotation-threshold ")[1].split()[0])
    assert value > 1.0  # the path turns 1.5 degrees per frame
    assert len(find_still_segments(c2w, rotation_threshold=value)) >= 1
    with pytest.raises(SelectionError):
        find_still_segments(c2w, rotation_threshold=value * 0.99)


def test_suggested_min_length_is_the_longest_still_run():
    c2w, expected = make_path([("move", 30), ("still", 35), ("move", 30)], seed=6)
    with pytest.raises(SelectionError) as info:
        find_still_segments(c2w, min_length=50)
    msg = str(info.value)
    longest = int(msg.split("--min-length ")[1].split()[0])
    assert abs(longest - 35) <= 6
    assert len(find_still_segments(c2w, min_length=longest)) == 1


def test_average_of_identical_poses_is_that_pose():
    rng = np.random.default_rng(7)
    m = np.eye(4)
    m[:3, :3] = small_rotation(rng, 40.0)
    m[:3, 3] = [0.3, -1.2, 2.5]
    avg = average_pose(np.repeat(m[None], 17, axis=0))
    np.testing.assert_allclose(avg, m, atol=1e-12)


def test_average_pose_is_a_proper_rotation_at_the_mean():
    rng = np.random.default_rng(8)
    base = small_rotation(rng, 30.0)
    poses = np.tile(np.eye(4), (50, 1, 1))
    for p in poses:
        p[:3, :3] = base @ small_rotation(rng, 3.0)
        p[:3, 3] = rng.normal(0, 0.1, 3) + [1.0, 2.0, 3.0]
    avg = average_pose(poses)
    r = avg[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(avg[:3, 3], poses[:, :3, 3].mean(0), atol=1e-12)
    angle = np.degrees(np.arccos(np.clip((np.trace(base.T @ r) - 1) / 2, -1, 1)))
    assert angle < 1.5  # mean of 50 rotations scattered by ~3 degrees around base


def test_deltas_units():
    # A pure 0.5-degree-per-frame yaw with no translation: rotation delta 0.5 deg.
    poses = np.tile(np.eye(4), (20, 1, 1))
    for i, p in enumerate(poses):
        p[:3, :3] = rot_y(0.5 * i)
    d = path_deltas(poses, window=1)
    np.testing.assert_allclose(d.rotation, 0.5, atol=1e-9)
    np.testing.assert_allclose(d.translation, 0.0)
    np.testing.assert_allclose(euler_xyz_degrees(rot_y(10.0)), [0, 10.0, 0], atol=1e-9)
    # Translation along a 10-unit line in 10 steps: step / extent = 0.1.
    line = np.tile(np.eye(4), (11, 1, 1))
    line[:, 0, 3] = np.arange(11.0)
    np.testing.assert_allclose(path_deltas(line, window=1).translation, 0.1)


def test_select_command_writes_json_and_png(tmp_path, monkeypatch):
    from loopnerf import cli, data
    from loopnerf.data import Capture, Intrinsics

    c2w, expected = make_path([("still", 55), ("move", 30), ("still", 60)], jitter_t=1e-4, seed=9)
    n = len(c2w)
    times = np.linspace(0, 1, n)
    perm = np.random.default_rng(0).permutation(n)  # stored out of time order on purpose
    k = Intrinsics(50.0, 51.0, 4.0, 3.0, 8, 6)
    capture = Capture(
        images=np.zeros((n, 6, 8, 3), np.uint8), c2w=c2w[perm], intrinsics=[k] * n, times=times[perm]
    )
    seen = {}

    def fake_load(path, **options):
        seen["args"] = (path, options)
        return capture

    monkeypatch.setattr(data, "load_capture", fake_load)
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    (run / "stage1" / "config.json").write_text(
        json.dumps({"capture": "/some/capture", "capture_options": {"downscale": 2}})
    )
    assert cli.main(["select", str(run), "--min-length", "40"]) == 0
    assert seen["args"] == ("/some/capture", {"downscale": 2})
    out = json.loads((run / "segments.json").read_text())
    segs = out["segments"]
    assert len(segs) == 2 and out["options"]["min_length"] == 40
    for seg, (a, b) in zip(segs, expected):
        assert abs(seg["start"] - a) <= 3 and abs(seg["stop"] - b) <= 3
        np.testing.assert_allclose(seg["times"], times[seg["start"] : seg["stop"]])
        assert seg["intrinsics"] == {"fx": 50.0, "fy": 51.0, "cx": 4.0, "cy": 3.0, "width": 8, "height": 6}
        np.testing.assert_allclose(
            np.array(seg["pose"]), average_pose(c2w[seg["start"] : seg["stop"]]), atol=1e-12
        )
    assert (run / "segments.png").stat().st_size > 1000


def test_select_command_errors_cleanly(tmp_path, monkeypatch, capsys):
    from loopnerf import cli, data
    from loopnerf.data import Capture, Intrinsics

    assert cli.main(["select", str(tmp_path / "nowhere")]) == 2
    assert "stage1/config.json" in capsys.readouterr().err
    c2w, _ = make_path([("move", 80)])
    k = Intrinsics(50.0, 50.0, 4.0, 3.0, 8, 6)
    capture = Capture(np.zeros((80, 6, 8, 3), np.uint8), c2w, [k] * 80, np.linspace(0, 1, 80))
    monkeypatch.setattr(data, "load_capture", lambda path, **kw: capture)
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "config.json").write_text(json.dumps({"capture": "x", "capture_options": {}}))
    assert cli.main(["select", str(tmp_path)]) == 2
    assert "--rotation-threshold" in capsys.readouterr().err


def test_select_command_reads_a_real_nerfstudio_capture(tmp_path):
    from loopnerf import cli
    from loopnerf.data import Capture, Intrinsics
    from loopnerf.data.nerfstudio import write_nerfstudio

    c2w, expected = make_path([("move", 20), ("still", 60), ("move", 20)], seed=10)
    n = len(c2w)
    k = Intrinsics(20.0, 20.0, 4.0, 4.0, 8, 8)
    images = np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    capture = Capture(images, c2w, [k] * n, np.linspace(0, 1, n))
    ns = write_nerfstudio(tmp_path / "capture", capture)
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    (run / "stage1" / "config.json").write_text(json.dumps({"capture": str(ns), "capture_options": {"downscale": 2}}))
    assert cli.main(["select", str(run)]) == 0
    segs = json.loads((run / "segments.json").read_text())["segments"]
    assert len(segs) == 1
    assert abs(segs[0]["start"] - expected[0][0]) <= 3 and abs(segs[0]["stop"] - expected[0][1]) <= 3
    assert segs[0]["intrinsics"]["width"] == 4 and segs[0]["intrinsics"]["fx"] == pytest.approx(10.0)
