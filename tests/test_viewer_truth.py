"""Scoring what the viewer shows against the synthetic truth: the orbit's static-region
PSNR, the moving-part mask, and the progress callback of long library steps."""

from __future__ import annotations

import numpy as np
import pytest

from loopnerf.data.capture import Intrinsics
from loopnerf.evaluation.viewer_truth import orbit_static_psnr


def test_orbit_static_psnr_ignores_the_moving_pixels():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    frames = truth.copy()
    moving = np.zeros((3, 8, 8), dtype=bool)
    moving[:, :2] = True
    frames[:, :2] = 255 - frames[:, :2]  # wrong only where things move: ignored
    truth[1, 5, 5], frames[1, 5, 5] = 100, 151  # one static pixel off by 51/255 in all channels
    res = orbit_static_psnr(frames, truth, moving)
    assert res["per_frame"][0] == res["per_frame"][2] and res["per_frame"][0] > 100  # identical: +inf clipped by rounding
    expected = -10 * np.log10((51 / 255) ** 2 / 48)  # one of 48 static pixels
    assert res["per_frame"][1] == pytest.approx(expected, abs=0.01)
    assert res["worst"] == pytest.approx(expected, abs=0.01)
    assert res["static_fraction"] == pytest.approx(0.75)


def test_moving_mask_covers_the_flag():
    from loopnerf.synth.command import SynthConfig
    from loopnerf.synth.camera_path import look_at
    from loopnerf.synth.truth_views import moving_mask

    cfg = SynthConfig(frames=48, size=32)
    scene = cfg.make_scene()
    k = cfg.intrinsics()
    flag = np.mean(np.concatenate([p.vertices for p in scene.parts(0) if p.moving]), axis=0)
    c2w = look_at(flag + np.array([0.0, 0.3, 2.5]), flag)
    mask = moving_mask(scene, c2w, k, [0, 12, 24, 36])
    assert mask.shape == (32, 32)
    assert mask[16, 16]  # looking straight at the flag
    assert 0.02 < mask.mean() < 0.8  # and not at everything
    # A camera looking away from the scene sees no moving part.
    away = look_at(flag + np.array([0.0, 0.3, 2.5]), flag + np.array([0.0, 0.3, 5.0]))
    assert not moving_mask(scene, away, k, [0, 12]).any()


def test_progress_callback_prints_quarters_when_not_a_terminal(capsys):
    from loopnerf.data.progress import progress_callback

    with progress_callback("culling", 8) as step:
        for i in range(8):
            step(i + 1, 8)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["culling: 2/8", "culling: 4/8", "culling: 6/8", "culling: 8/8"]
    with progress_callback("culling", 8, quiet=True) as step:
        step(8, 8)
    assert capsys.readouterr().err == ""


def test_stage1_capture_errors(tmp_path):
    from loopnerf.errors import ConfigError
    from loopnerf.run_folder import RunFolder

    stage1_capture = lambda run: RunFolder(run).load_capture()  # noqa: E731

    with pytest.raises(ConfigError, match="not found"):
        stage1_capture(tmp_path)
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        stage1_capture(tmp_path)
    (tmp_path / "stage1" / "config.json").write_text('{"config": {}}')
    with pytest.raises(ConfigError, match="'capture' is missing"):
        stage1_capture(tmp_path)
