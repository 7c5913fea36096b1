"""The Python API: cheap to import, the example script does the whole job with the tiny
preset, and the configs behave as the command line does (choices checked, --resume
refuses a changed option, --config.* reaches the config)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_is_cheap_and_names_resolve():
    code = (
        "import sys, loopnerf\n"
        "heavy = [m for m in ('torch', 'taichi', 'open3d', 'pyglet') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert {'load_capture', 'fit', 'Run', 'Renderer', 'load_loop'} <= set(dir(loopnerf))\n"
        "assert callable(loopnerf.fit) and loopnerf.Run.__name__ == 'Run'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    from loopnerf.synth.command import SynthConfig, make_synthetic_capture, write_synthetic_capture

    out = tmp_path_factory.mktemp("api_capture")
    cap, gt = make_synthetic_capture(SynthConfig(frames=160, size=32, supersample=1))
    write_synthetic_capture(out, cap, gt)
    return out


@pytest.fixture(scope="module")
def example_run(capture_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("api_run") / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "fit_and_view.py"), str(capture_dir), str(out), "--preset", "tiny"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def test_example_script_does_the_whole_job(example_run):
    import imageio.v3 as iio

    import loopnerf

    out, stdout = example_run
    assert "fit 300/300" in stdout  # the progress callback saw the last step
    run = loopnerf.Run(out)
    assert run.stage1_done() and run.has_segments() and run.loop_done("loop") and run.has_bake()
    assert run.read_stage1_eval()["psnr"] > 15.0
    loop = loopnerf.load_loop(run.baked_path)
    assert loop.frames == 8  # the tiny distillation preset's F
    frame = iio.imread(out / "frame.png")
    assert frame.shape == (loop.camera["height"], loop.camera["width"], 3) and frame.std() > 5.0
    # the loop moves: its planes start equal at every phase (init 'ones', plus seeded noise of
    # relative size init_noise = 1e-3 to break the tie) and training makes them differ more
    model, _ = run.load_loop_model()
    motion = [float(q.detach().std(0).mean() / q.detach().abs().mean()) for q in model.field.loop_planes]
    assert max(motion) > 2e-3, motion
    # the run folder's records read back as typed values
    seg = run.read_segments().longest()
    assert seg.pose.shape == (4, 4) and len(seg.times) == len(seg) >= 25
    assert loopnerf.load_capture is not None and seg.intrinsics == type(seg.intrinsics).from_dict(loop.camera)  # the baked default camera


def test_run_methods_return_what_they_made(example_run, tmp_path):
    import loopnerf

    out, _ = example_run
    run = loopnerf.Run(out)
    calls = []
    path = run.bake(tmp_path / "again.loop", cull=False, progress=lambda d, t: calls.append((d, t)))
    assert path == tmp_path / "again.loop" and loopnerf.load_loop(path).frames == 8
    rgb, _ = run.renderer(16, 12).render_phase(np.asarray(loopnerf.load_loop(path).camera["c2w"]), 0.5)
    assert rgb.shape == (12, 16, 3)


def test_resume_refuses_a_changed_option(example_run, capsys):
    from loopnerf.cli import main

    out, _ = example_run
    capture = json.loads((out / "stage1" / "config.json").read_text())["capture"]
    code = main(["train", capture, "--out", str(out), "--resume", "--rays", "64", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--resume continues" in err and "train.rays (512 -> 64)" in err
    code = main(["train", capture, "--out", str(out), "--resume", "--config.model.samples", "9", "--quiet"])
    assert code == 2 and "model.samples (16 -> 9)" in capsys.readouterr().err
    code = main(["distill", str(out), "--resume", "--frames", "5", "--quiet"])
    assert code == 2 and "frames (8 -> 5)" in capsys.readouterr().err


def test_config_flags_reach_the_config_and_choices_are_checked(capture_dir, tmp_path, capsys):
    from loopnerf.cli import main
    from loopnerf.errors import ConfigError
    from loopnerf.model.config import config_from_dict, config_to_dict, preset

    with pytest.raises(SystemExit):  # tyro rejects a value outside the choices
        main(["train", str(capture_dir), "--kernel", "taich"])
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["train", str(capture_dir), "--out", str(out), "--preset", "tiny", "--steps", "3",
                 "--config.train.lr", "0.005", "--config.model.samples", "12", "--quiet"]) == 0
    cfg = json.loads((out / "stage1" / "config.json").read_text())["config"]
    assert cfg["preset"] == "tiny" and cfg["train"]["steps"] == 3 and cfg["train"]["lr"] == 0.005 and cfg["model"]["samples"] == 12
    assert cfg["model"]["field"]["resolution"][:3] == [16, 16, 16]  # the tiny preset's grid, not cpu's
    bad = config_to_dict(preset("tiny"))
    bad["model"]["kernel_backend"] = "taich"
    with pytest.raises(ConfigError, match="kernel_backend must be one of 'taichi', 'torch'"):
        config_from_dict(bad)
    help_text = subprocess.run([sys.executable, "-m", "loopnerf.cli", "train", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    assert "{tiny,cpu,paper}" in help_text and "{None,taichi,torch}" in help_text and "--config.train.lr" in help_text
