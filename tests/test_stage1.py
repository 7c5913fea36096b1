"""Stage 1: the tiny preset fits, regularizers give known answers, resume is exact,
non-finite losses are caught, and the static decomposition of a still scene matches."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from loopnerf.errors import TrainingError
from loopnerf.model import losses as L
from loopnerf.model.config import preset
from loopnerf.model.render_image import render_image
from loopnerf.model.train import Stage1Trainer
from loopnerf.run_folder import RunFolder
from loopnerf.synth.command import SynthConfig, make_synthetic_capture


@pytest.fixture(scope="module")
def small_capture():
    cap, _ = make_synthetic_capture(SynthConfig(frames=60, size=32, supersample=1, seed=0))
    return cap


def tiny_cfg(cap, steps=None, backend="taichi"):
    cfg = preset("tiny")
    cfg.model.kernel_backend = backend
    cfg.model.background = tuple(cap.meta["synth"]["background"])
    if steps is not None:
        cfg.train.steps = steps
    return cfg


def test_tiny_fit_reaches_psnr_floor(small_capture, tmp_path):
    cap = small_capture
    trainer = Stage1Trainer(cap, tiny_cfg(cap), tmp_path, {"capture": "synthetic"}, quiet=True)
    result = trainer.run()
    held = cap.images_float(cap.eval_idx)
    # the best constant image (mean colour) is the baseline any fit must beat clearly
    mean_img = held.mean(axis=(0, 1, 2), keepdims=True)
    baseline = -10 * math.log10(float(((held - mean_img) ** 2).mean()))
    assert result["psnr"] >= 16.5
    assert result["psnr"] >= baseline + 4.0
    ev = json.loads((tmp_path / "stage1" / "eval.json").read_text())
    assert len(ev["frames"]) == len(cap.eval_idx) and ev["psnr"] == pytest.approx(result["psnr"])
    assert (tmp_path / "stage1" / "eval.png").is_file()
    # the written weights reload into a model that renders the same image
    model, info = RunFolder(tmp_path).load_stage1()
    i = int(cap.eval_idx[0])
    a = render_image(model, cap.c2w[i], cap.intrinsics[i], float(cap.times[i]))["rgb"]
    b = render_image(trainer.model, cap.c2w[i], cap.intrinsics[i], float(cap.times[i]))["rgb"]
    np.testing.assert_allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------ regularizers
def test_time_smoothness_known_answers():
    t = torch.arange(10, dtype=torch.float64)
    linear = (3.0 * t - 2.0)[:, None, None].expand(10, 5, 4)
    assert float(L.time_smoothness([linear])) == pytest.approx(0.0, abs=1e-12)
    quad = (t**2)[:, None, None].expand(10, 5, 4)  # second difference of t^2 is 2 everywhere
    assert float(L.time_smoothness([quad])) == pytest.approx(4.0)


def test_plane_tv_known_answers():
    h, w = 6, 8
    ramp_w = torch.arange(w, dtype=torch.float64)[None, :, None].expand(h, w, 3)  # d/dW = 1, d/dH = 0
    assert float(L.plane_tv(ramp_w)) == pytest.approx(2.0)
    assert float(L.plane_tv(ramp_w, only_w=True)) == pytest.approx(2.0)
    ramp_h = (2 * torch.arange(h, dtype=torch.float64))[:, None, None].expand(h, w, 3)  # d/dH = 2
    assert float(L.plane_tv(ramp_h)) == pytest.approx(8.0)
    assert float(L.plane_tv(ramp_h, only_w=True)) == pytest.approx(0.0)
    const = torch.full((h, w, 3), 0.3, dtype=torch.float64)
    assert float(L.plane_tv(const)) == 0.0


def test_l1_time_known_answer():
    p = torch.full((4, 5, 2), 0.75, dtype=torch.float64)
    assert float(L.l1_time_planes([p, torch.ones(3, 3, 2, dtype=torch.float64)])) == pytest.approx(0.125)


def test_distortion_loss_matches_quadratic_form():
    g = torch.Generator().manual_seed(0)
    edges = torch.sort(torch.rand(3, 9, generator=g, dtype=torch.float64), dim=-1).values
    w = torch.rand(3, 8, generator=g, dtype=torch.float64)
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    brute = (w[:, :, None] * w[:, None, :] * (mid[:, :, None] - mid[:, None, :]).abs()).sum((1, 2))
    brute = brute + (w**2 * (edges[:, 1:] - edges[:, :-1])).sum(-1) / 3
    assert float(L.distortion_loss(edges, w)) == pytest.approx(float(brute.mean()), rel=1e-10)


def test_interlevel_bound_covers_identical_histograms():
    g = torch.Generator().manual_seed(1)
    edges = torch.sort(torch.rand(4, 11, generator=g, dtype=torch.float64), dim=-1).values
    w = torch.rand(4, 10, generator=g, dtype=torch.float64)
    # the same histogram bounds itself exactly: no interlevel penalty
    assert float(L.interlevel_loss(edges, w, [edges], [w])) == pytest.approx(0.0, abs=1e-12)
    # a proposal with no weight where the final histogram has some is penalised
    assert float(L.interlevel_loss(edges, w, [edges], [torch.zeros_like(w)])) > 0.1


# ------------------------------------------------------------------ resume / NaN
def test_resume_is_exact(small_capture, tmp_path):
    cap = small_capture
    n = 20
    straight = Stage1Trainer(cap, tiny_cfg(cap, 2 * n), tmp_path / "a", {"capture": "x"}, quiet=True)
    for _ in range(2 * n):
        straight.train_step()
    first = Stage1Trainer(cap, tiny_cfg(cap, 2 * n), tmp_path / "b", {"capture": "x"}, quiet=True)
    for _ in range(n):
        first.train_step()
    first.save()
    second = Stage1Trainer(cap, tiny_cfg(cap, 2 * n), tmp_path / "b", {"capture": "x"}, quiet=True)
    second.resume()
    assert second.step == n
    for _ in range(n):
        second.train_step()
    for (name, a), (_, b) in zip(straight.model.named_parameters(), second.model.named_parameters()):
        assert torch.equal(a, b), name


def test_nonfinite_loss_is_caught(small_capture, tmp_path, monkeypatch):
    cap = small_capture
    trainer = Stage1Trainer(cap, tiny_cfg(cap, 10), tmp_path, {"capture": "x"}, quiet=True)
    real = trainer.compute_loss

    def poisoned(batch):
        loss, terms = real(batch)
        if trainer.step == 3:
            terms["mse"] = terms["mse"] * float("nan")
            loss = sum(terms.values())
        return loss, terms

    monkeypatch.setattr(trainer, "compute_loss", poisoned)
    for _ in range(3):
        trainer.train_step()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(TrainingError, match="step 3"):
        trainer.train_step()
    # the parameters were not touched by the bad step
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    trainer.skip_nonfinite = True
    r = trainer.train_step()
    assert r.get("skipped") and trainer.skipped == 1 and trainer.step == 4
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


# ------------------------------------------------------------------ decomposition
def test_static_decomposition_of_still_scene(tmp_path):
    # frames one motion period apart show the scene in the same state: a still scene
    # captured at many different times
    period = 4
    cap, _ = make_synthetic_capture(SynthConfig(frames=160, size=32, supersample=1, period=period, seed=3, motion="periodic"))
    still = cap.subset(np.arange(0, len(cap), period))
    still.eval_idx = np.array([3, 17, 31])
    still.train_idx = np.setdiff1d(np.arange(len(still)), still.eval_idx)
    cfg = tiny_cfg(cap, 150)
    # a user fitting a still scene weights the L1 pull of the time planes towards one up;
    # then nothing may be left in them, and the static part is the whole render
    cfg.train.losses.l1_time = cfg.train.losses.l1_time_proposal = 0.5
    trainer = Stage1Trainer(still, cfg, tmp_path, {"capture": "x"}, quiet=True)
    trainer.run()
    for i in still.eval_idx:
        full = render_image(trainer.model, still.c2w[i], still.intrinsics[i], float(still.times[i]))["rgb"]
        static = render_image(trainer.model, still.c2w[i], still.intrinsics[i], float(still.times[i]), static=True)["rgb"]
        mse = float(((full - static) ** 2).mean())
        assert -10 * math.log10(max(mse, 1e-12)) >= 50.0


def test_static_switch_ignores_time_planes(small_capture):
    cap = small_capture
    field = Stage1Trainer(cap, tiny_cfg(cap, 1), "/nonexistent-unused", {"capture": "x"}, quiet=True).model.field
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 5, 3, generator=g) * 2 - 1
    t = torch.rand(8, generator=g)
    # time planes at their initial ones: the static part is the whole field
    torch.testing.assert_close(field.features(x, t), field.features(x, t, static=True))
    with torch.no_grad():
        for p in field.grid.space_time_planes():
            p.mul_(0.5)
    # three time planes per scale at one half: the full features are 1/8 of the static ones
    torch.testing.assert_close(field.features(x, t), field.features(x, t, static=True) / 8.0)


def test_step_lines_report_progress_off_a_terminal(capsys):
    from loopnerf.data.progress import step_lines

    lines = step_lines("stage 1", 100)  # pytest's stderr is no terminal
    assert lines.active
    for step in range(10, 101, 10):
        lines.update(step, "loss 0.1")
    err = capsys.readouterr().err.strip().splitlines()
    assert [e.split("  ")[0] for e in err] == [f"stage 1: {k}/100" for k in range(10, 101, 10)]
    resumed = step_lines("stage 1", 100, start=55)
    for step in range(60, 101, 10):
        resumed.update(step)
    assert capsys.readouterr().err.count("stage 1:") == 5
    quiet = step_lines("stage 1", 100, quiet=True)
    quiet.update(100)
    assert capsys.readouterr().err == ""
