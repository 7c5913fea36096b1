"""End to end with the `tiny` preset: `loopnerf demo` (synth -> fit -> select -> distill ->
bake -> render -> eval -> report), then the loop rendered through `loopnerf render`.

Every artefact is checked for validity, not just existence.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from loopnerf.cli import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    return out


def test_demo_artefacts_are_valid(demo_dir):
    from loopnerf.export import load_loop
    from loopnerf.video import read_video

    out, run = demo_dir, demo_dir / "run"
    meta = json.loads((out / "capture" / "gt" / "meta.json").read_text())
    period = meta["period_frames"]
    baked = load_loop(run / "scene.loop")
    assert baked.frames == period
    loop_mp4 = read_video(out / "loop.mp4")
    loop_gif = read_video(out / "loop.gif")
    assert len(loop_mp4) == len(loop_gif) >= 3 * period  # several cycles
    compare = read_video(out / "compare.mp4")
    assert len(compare) == 3 * period
    assert compare.shape[2] >= 3 * compare.shape[1] - 2  # three panels side by side
    import imageio.v3 as iio

    for png in ("scanlines.png", "segments.png"):
        img = iio.imread(out / png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 1.0
    report = (out / "report.md").read_text()
    for needle in ("held-out PSNR", "seam_ratio", "naive", "scene.loop", "best cyclic phase"):
        assert needle in report
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["loops"]) == {"loop", "naive"}
    for m in ev["loops"].values():
        for key in ("stderr", "completeness", "coherence", "loopq", "seam_ratio"):
            assert np.isfinite(m[key])
    assert set(ev["ground_truth"]["cameras"]) == {"supervised", "novel", "extrapolated"}
    # natural motion (the demo's default) and the scores that see damping and blur
    gt = ev["ground_truth"]
    assert gt["motion"] == meta["motion"] == "natural"
    assert len(gt["stills"]) == len(meta["stills"]) and gt["supervised_still"] is not None
    for st in gt["stills"]:
        for name in ("stage1", "loop", "naive"):
            for key in ("motion_ratio", "coherence", "completeness", "static_psnr"):
                assert np.isfinite(st[name][key]), (name, key)
        assert np.isfinite(st["stage1"]["moving_psnr"]) and np.isfinite(st["loop"]["static_psnr_vs_stage1"])
    for name in ("loop", "naive"):
        assert np.isfinite(gt["cameras"]["novel"][name]["motion_ratio"])
        assert np.isfinite(ev["loops"][name]["motion_ratio"])
    for needle in ("motion ratio", "true states", "Summary at the supervised still camera"):
        assert needle in report
    # stage 1 scored the way a loop is: its own windows against the true cycle
    ref = gt["cameras"]["supervised"]["references"]
    assert ref["stage1_windows_min"] <= ref["stage1_windows_mean"] <= ref["stage1_windows_max"]
    assert np.isfinite(ref["stage1_windows_min"])
    assert "every F-frame window of stage 1 as a loop" in report


def test_demo_skips_finished_stages(demo_dir, capsys):
    before = (demo_dir / "run" / "scene.loop").stat().st_mtime_ns
    assert main(["demo", "--preset", "tiny", "--out", str(demo_dir), "--quiet"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert (demo_dir / "run" / "scene.loop").stat().st_mtime_ns == before


def test_render_loop_stage_and_fit_stage(demo_dir, tmp_path):
    import imageio.v3 as iio

    from loopnerf.data.camera_file import write_cameras
    from loopnerf.data.capture import Intrinsics

    run = demo_dir / "run"
    seg = json.loads((run / "segments.json").read_text())["segments"][0]
    k = seg["intrinsics"]
    intr = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], k["width"], k["height"])
    f = json.loads((run / "loop" / "config.json").read_text())["frames"]
    cams = write_cameras(tmp_path / "cams.json", [seg["pose"]] * (f + 1), [intr] * (f + 1), [i / f for i in range(f)] + [0.0])
    assert main(["render", str(run), "--cameras", str(cams), "--out", str(tmp_path / "loop"), "--stage", "loop", "--depth", "--video", str(tmp_path / "loop.mp4")]) == 0
    frames = [iio.imread(tmp_path / "loop" / f"{i:05d}.png") for i in range(f + 1)]
    assert frames[0].shape == (k["height"], k["width"], 3)
    # phase 0 rendered twice is the same image; the depth maps exist and are finite
    np.testing.assert_array_equal(frames[0], frames[-1])
    assert np.isfinite(np.load(tmp_path / "loop" / "depth.npy")).all()
    assert main(["render", str(run), "--cameras", str(cams), "--out", str(tmp_path / "fit"), "--stage", "fit"]) == 0
    assert (tmp_path / "fit" / f"{f:05d}.png").is_file()


def test_render_bad_camera_file_is_a_clean_error(demo_dir, tmp_path, capsys):
    bad = tmp_path / "cams.json"
    bad.write_text(json.dumps({"frames": [{"transform_matrix": [[1, 0, 0, 0]], "w": 8, "h": 8, "fl_x": 5}]}))
    assert main(["render", str(demo_dir / "run"), "--cameras", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "transform_matrix" in capsys.readouterr().err


def test_distill_resume_is_exact(demo_dir, tmp_path):
    import shutil

    import torch

    from loopnerf.distill.train import Distiller, distill_preset

    run = tmp_path / "run"
    shutil.copytree(demo_dir / "run", run)
    cfg = distill_preset("tiny")
    cfg.steps = 12
    straight = Distiller(run, cfg, "loop", quiet=True)
    straight.dir = run / "straight"
    for _ in range(12):
        straight.train_step()
    first = Distiller(run, cfg, "loop", quiet=True)
    first.dir = run / "split"
    for _ in range(6):
        first.train_step()
    first.save()
    second = Distiller(run, cfg, "loop", quiet=True)
    second.dir = run / "split"
    second.resume()
    assert second.step == 6
    for _ in range(6):
        second.train_step()
    for a, b in zip(straight.model.loop_parameters(), second.model.loop_parameters()):
        assert torch.equal(a, b)
    # the loop actually trained: its planes left where they started
    start = Distiller(run, cfg, "loop", quiet=True).model.loop_parameters()
    assert any(not torch.equal(p, q) for p, q in zip(second.model.loop_parameters(), start))


def test_wrap_rows_are_the_frames_beside_the_wrap():
    from loopnerf.distill.train import wrap_rows
    from loopnerf.errors import ConfigError

    assert wrap_rows(8, 2).tolist() == [True, True, False, False, False, False, True, True]
    assert wrap_rows(8, 0).all() and wrap_rows(8, 4).all() and wrap_rows(5, 3).all()
    with pytest.raises(ConfigError):
        wrap_rows(8, -1)


def test_only_the_frames_beside_the_wrap_train(demo_dir, tmp_path):
    """init 'segment' with wrap_frames w: the loop-plane rows of frames w..F-w-1 keep the
    stage-1 motion they started from bit for bit, the rows beside the wrap train; with
    w = 0 every row trains (the report's distillation)."""
    import shutil

    import torch

    from loopnerf.distill.train import Distiller, distill_preset

    run = tmp_path / "run"
    shutil.copytree(demo_dir / "run", run)
    cfg = distill_preset("tiny")
    cfg.frames, cfg.wrap_frames, cfg.init = 12, 2, "segment"
    d = Distiller(run, cfg, "loop", quiet=True)
    start = [p.detach().clone() for p in d.model.loop_parameters()]
    for _ in range(8):
        d.train_step()
    after = d.model.loop_parameters()
    for p, q in zip(after, start):
        assert torch.equal(p[2:10], q[2:10])
    moved = [bool((p[r] != q[r]).any()) for p, q in zip(after, start) for r in (0, 1, 10, 11)]
    assert any(moved)
    cfg.wrap_frames = 0
    every = Distiller(run, cfg, "loop", quiet=True)
    for _ in range(8):
        every.train_step()
    assert any(not torch.equal(p[2:10], q[2:10]) for p, q in zip(every.model.loop_parameters(), start))


def test_render_baked_loop_matches_the_viewer(demo_dir, tmp_path):
    import imageio.v3 as iio

    from loopnerf.data.camera_file import write_cameras
    from loopnerf.data.capture import Intrinsics
    from loopnerf.export import load_loop
    from loopnerf.viewer import Renderer

    baked = load_loop(demo_dir / "run" / "scene.loop")
    cam = baked.camera
    intr = Intrinsics(cam["fx"], cam["fy"], cam["cx"], cam["cy"], cam["width"], cam["height"])
    cams = write_cameras(tmp_path / "cams.json", [cam["c2w"]] * 2, [intr] * 2, [0.0, 0.5])
    assert main(["render", str(demo_dir / "run" / "scene.loop"), "--cameras", str(cams), "--out", str(tmp_path / "baked")]) == 0
    direct = Renderer(baked, intr.width, intr.height).render_phase(np.asarray(cam["c2w"]), 0.5, intrinsics=intr)[0]
    np.testing.assert_array_equal(iio.imread(tmp_path / "baked" / "00001.png"), direct)


def test_viewer_matches_the_loop_model(demo_dir, tmp_path):
    """The baked viewer against `loopnerf render RUN --stage loop --samples 1024`: the loop
    model's own field integrated with evenly spaced samples (what the viewer marches)."""
    import imageio.v3 as iio

    from loopnerf.data.camera_file import write_cameras
    from loopnerf.data.capture import Intrinsics
    from loopnerf.export import load_loop
    from loopnerf.viewer import Renderer

    baked = load_loop(demo_dir / "run" / "scene.loop")
    cam = baked.camera
    intr = Intrinsics(cam["fx"], cam["fy"], cam["cx"], cam["cy"], cam["width"], cam["height"])
    phases = [0.0, 0.375]
    cams = write_cameras(tmp_path / "cams.json", [cam["c2w"]] * 2, [intr] * 2, phases)
    out = tmp_path / "model"
    assert main(["render", str(demo_dir / "run"), "--stage", "loop", "--samples", "1024", "--cameras", str(cams), "--out", str(out)]) == 0
    renderer = Renderer(baked, intr.width, intr.height)
    for i, phase in enumerate(phases):
        model = iio.imread(out / f"{i:05d}.png").astype(np.float64) / 255.0
        viewer = renderer.render_phase(np.asarray(cam["c2w"]), phase, intrinsics=intr)[0].astype(np.float64) / 255.0
        psnr = -10.0 * np.log10(np.mean((model - viewer) ** 2))
        assert psnr >= 35.0, f"phase {phase}: viewer vs loop model {psnr:.2f} dB"
    # --samples is for run directories; the .loop renderer marches by itself
    assert main(["render", str(demo_dir / "run" / "scene.loop"), "--samples", "64", "--cameras", str(cams), "--out", str(out)]) == 2


def test_eval_at_a_camera_file(demo_dir, tmp_path):
    import shutil

    from loopnerf.data.camera_file import write_cameras
    from loopnerf.data.capture import Intrinsics

    run = tmp_path / "run"
    shutil.copytree(demo_dir / "run", run)
    seg = json.loads((run / "segments.json").read_text())["segments"][1]
    k = seg["intrinsics"]
    intr = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], k["width"], k["height"])
    times = seg["times"]
    cams = write_cameras(tmp_path / "view.json", [seg["pose"]] * len(times), [intr] * len(times), times)
    assert main(["eval", str(run), "--cameras", str(cams), "--no-ground-truth"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["view"]["cameras"] == str(cams) and ev["view"]["frames"] == len(times)
    assert "ground_truth" not in ev
    # the same view as segment 1: the same metrics as evaluating that segment
    assert main(["eval", str(run), "--segment", "1", "--no-ground-truth"]) == 0
    ev_seg = json.loads((run / "eval.json").read_text())
    for key in ("coherence", "seam_ratio"):
        assert abs(ev["loops"]["loop"][key] - ev_seg["loops"]["loop"][key]) < 1e-3 * max(1.0, abs(ev_seg["loops"]["loop"][key]))


def test_static_part_of_the_loop_start_is_the_stage1_scene(demo_dir):
    """The loop's start renders the static region as stage 1 does, both the default base
    (stage 1's time planes averaged over time) and time planes as ones (the report's
    literal start): outside the dynamic region stage 1 has no time dependence, so its
    space planes hold the static scene. (Before the dynamic region, stage 1's space-time
    planes carried static structure and the ones start scored 15.7 dB there.)"""
    from loopnerf.data.capture import Intrinsics
    from loopnerf.distill.loop_model import LoopModel, render_loop_frames
    from loopnerf.evaluation.metrics import psnr
    from loopnerf.model.render_image import render_image
    from loopnerf.run_folder import RunFolder
    import imageio.v3 as iio

    run, cap = demo_dir / "run", demo_dir / "capture"
    meta = json.loads((cap / "gt" / "meta.json").read_text())
    st = meta["stills"][1]
    k = st["intrinsics"]
    intr = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], k["width"], k["height"])
    static = iio.imread(cap / "gt" / st["mask"]) <= 127
    stage1, _ = RunFolder(run).load_stage1()
    full = np.stack([render_image(stage1, st["c2w"], intr, t)["rgb"] for t in st["times"][::4]]).mean(0)
    mean_start = render_loop_frames(LoopModel(stage1, 4, base="mean"), st["c2w"], intr, 1)[0]
    ones_start = render_loop_frames(LoopModel(stage1, 4, base="ones"), st["c2w"], intr, 1)[0]
    p_mean, p_ones = psnr(mean_start, full, mask=static), psnr(ones_start, full, mask=static)
    assert p_mean >= 35.0 and p_ones >= 35.0, (p_mean, p_ones)


def test_demo_bake_is_culled_and_the_viewer_is_scored_against_truth(demo_dir):
    """The bake culls the occupancy to what the capture's cameras saw, and the report
    scores what the viewer draws (the novel orbit and the gt cameras) against the truth."""
    from loopnerf.export import load_loop
    from loopnerf.video import read_video

    out, run = demo_dir, demo_dir / "run"
    meta = json.loads((out / "capture" / "gt" / "meta.json").read_text())
    baked = load_loop(run / "scene.loop")
    culling = baked.extra["culling"]
    from loopnerf.data import load_capture
    from loopnerf.export.visibility import culling_views

    cap = load_capture(out / "capture")
    views = culling_views(cap.c2w, cap.intrinsics, baked.frames, box=baked.box, cells=baked.occupancy_resolution)
    # every capture frame, a still camera once per loop phase
    assert culling["views"] == len(views) < meta["frames"]
    assert culling["occupied_after"] <= culling["occupied_before"]
    assert json.loads((run / "bake.json").read_text())["culling"]["views"] == len(views)
    vt = json.loads((run / "viewer_truth.json").read_text())
    n = len(read_video(out / "loop.mp4"))
    assert len(vt["orbit"]["per_frame"]) == n
    assert all(np.isfinite(v) and 5.0 < v < 60.0 for v in vt["orbit"]["per_frame"])
    assert 0.3 < vt["orbit"]["static_fraction"] < 1.0  # the mask removes the moving part, not everything
    assert set(vt["cameras"]) == {"supervised", "novel", "extrapolated"}
    for row in vt["cameras"].values():
        assert np.isfinite(row["static_psnr"]) and np.isfinite(row["best_phase_psnr"])
    report = (out / "report.md").read_text()
    assert "What the viewer shows, against the truth" in report and "worst frame" in report


def test_still_scores_reuse_the_segment_videos_exactly(demo_dir):
    """Eval takes stage 1's render at a still stretch from the segment video of the same
    camera where it has the time; the scores equal rendering every frame again."""
    from loopnerf.distill.segment_videos import render_segment_videos
    from loopnerf.evaluation.command import find_ground_truth, ground_truth_scores
    from loopnerf.run_folder import RunFolder

    folder = RunFolder(demo_dir / "run")
    stage1, info = folder.load_stage1()
    gt = find_ground_truth(info["capture"])
    videos = render_segment_videos(folder.path, stage1, quiet=True)
    loops = {"loop": folder.load_loop_model("loop")[0]}
    reused = ground_truth_scores(gt, loops, stage1, stage1_videos=videos)["stills"]
    fresh = ground_truth_scores(gt, loops, stage1)["stills"]
    meta = json.loads(gt.read_text())
    assert len(reused) == len(meta["stills"]) >= 1
    from loopnerf.data.capture import Intrinsics
    from loopnerf.evaluation.command import _same_camera

    matched = [any(_same_camera(v, np.asarray(st["c2w"], np.float64), Intrinsics.from_dict(st["intrinsics"])) for v in videos)
               for st in meta["stills"]]
    assert any(matched), "no still stretch matches a segment: the reuse is never exercised"
    for a, b in zip(reused, fresh):
        for key in ("motion_ratio", "static_psnr", "moving_psnr"):
            assert a["stage1"][key] == pytest.approx(b["stage1"][key], abs=2e-3), key  # float16 storage of the videos
