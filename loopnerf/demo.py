"""`loopnerf demo`: the whole job on the built-in synthetic capture, in one command.

synth -> fit (stage 1) -> select -> distill (loop, and the naive baseline) -> bake ->
render (loop.mp4 / loop.gif from a novel orbit, compare.mp4) -> eval -> report.md.
A stage whose output exists is skipped unless `--fresh`, so an interrupted demo picks
up where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from loopnerf.choices import Preset, check_choice
from loopnerf.json_file import save_json_atomic


@dataclass
class DemoPreset:
    synth_size: int
    synth_frames: int
    supersample: int
    min_length: int
    orbit_seconds: float
    video_size: int


DEMO_PRESETS = {
    "tiny": DemoPreset(synth_size=32, synth_frames=160, supersample=1, min_length=25, orbit_seconds=1.0, video_size=64),
    "cpu": DemoPreset(synth_size=96, synth_frames=240, supersample=2, min_length=35, orbit_seconds=3.0, video_size=128),
    "paper": DemoPreset(synth_size=256, synth_frames=300, supersample=2, min_length=50, orbit_seconds=6.0, video_size=512),
}


class _Stages:
    """Runs named stages, timing each and printing a one-line summary."""

    def __init__(self, report: dict, quiet: bool) -> None:
        self.report = report
        self.quiet = quiet

    def run(self, name: str, done: bool, fn) -> None:
        from rich.console import Console

        con = Console(stderr=False)
        if done:
            con.print(f"[dim]{name:<8} skipped (output exists; --fresh to redo)[/dim]")
            return
        t0 = time.perf_counter()
        summary = fn() or ""
        dt = time.perf_counter() - t0
        self.report.setdefault("seconds", {})[name] = dt
        con.print(f"[bold green]{name:<8}[/bold green] {dt:6.1f} s  {summary}")


def _orbit_frames(renderer, size: int, seconds: float):
    """(frames, poses, intrinsics, fps): the baked loop drawn by the viewer's renderer from
    a slow orbit around its default camera (`viewer_truth.orbit_poses` owns the orbit)."""
    from loopnerf.evaluation.viewer_truth import orbit_poses

    poses, k, fps = orbit_poses(renderer.loop, size, seconds)
    return [renderer.render(p, i / fps, intrinsics=k)[0] for i, p in enumerate(poses)], poses, k, fps


def demo(
    preset: Preset = "cpu",
    out: Path = Path("runs/demo"),
    fresh: bool = False,
    quiet: bool = False,
    motion: Literal["natural", "periodic"] = "natural",
    backdrop: Literal["near", "far"] = "near",
) -> int:
    """Run the whole method on the built-in synthetic capture and write videos and a report.

    Args:
        preset: 'tiny' (about a minute, for tests), 'cpu' (default; about 6-7 minutes on a
            2-core CPU), 'paper' (GPU).
        out: demo folder: capture/, run/ (stage outputs), loop.mp4, loop.gif, compare.mp4,
            scanlines.png, segments.png, report.md.
        fresh: redo every stage even if its output exists.
        quiet: fewer progress bars.
        motion: the synthetic capture's motion: 'natural' (default; drifting tempo and gusts,
            never repeating exactly, like real footage) or 'periodic' (repeats exactly every
            period, so t mod F is the true phase).
        backdrop: what is behind the scene: 'near' (default; a painted wall in the box, a
            flat sky) or 'far' (hills and clouds at infinity: stage 1 then fits an
            unbounded field, and the bake and the viewer draw it contracted).
    """
    from loopnerf.run import Run
    from loopnerf.synth.command import SynthConfig, make_synthetic_capture, write_synthetic_capture

    check_choice(preset, Preset, "preset")
    dp = DEMO_PRESETS[preset]
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    cap_dir = out / "capture"
    r = Run(out / "run")
    run = r.path
    report: dict = {"preset": preset}
    st = _Stages(report, quiet)
    t_start = time.perf_counter()

    def do_synth():
        cfg = SynthConfig(frames=dp.synth_frames, size=dp.synth_size, supersample=dp.supersample, motion=motion, backdrop=backdrop)
        cap, gt = make_synthetic_capture(cfg, progress=not quiet)
        write_synthetic_capture(cap_dir, cap, gt)
        return f"{len(cap)} frames of {cfg.size}x{cfg.size}, {cfg.motion} motion, period {cfg.period} frames, {cfg.backdrop} backdrop"

    st.run("synth", (cap_dir / "transforms.json").is_file(), do_synth)
    meta = json.loads((cap_dir / "gt" / "meta.json").read_text())
    period = int(meta["period_frames"])

    def do_train():
        ev = r.fit(cap_dir, preset, quiet=quiet)
        return f"held-out PSNR {ev['psnr']:.2f} dB"

    st.run("fit", r.stage1_done(), do_train)

    def do_select():
        found = r.select(min_length=dp.min_length)
        shutil.copy(r.segments_png, out / r.segments_png.name)
        return f"{len(found.segments)} still segments"

    st.run("select", r.has_segments(), do_select)

    for method in ("loop", "naive"):
        def do_distill(method=method):
            s = r.distill(frames=period, preset=preset, method=method, quiet=quiet)
            return f"{method}: {s['loop_time_parameters']:,} time parameters ({s['compression']:.1f}x fewer than stage 1)"

        st.run(f"distill-{method}", r.loop_done(method), do_distill)

    def do_bake():
        r.bake(quiet=quiet)
        b = r.read_bake_summary()
        return f"{r.baked_path.name} {b['bytes']['scene.loop'] / 1e6:.2f} MB"

    st.run("bake", r.has_bake(), do_bake)

    viewer: dict = {}

    def renderer():
        """The viewer's renderer of the baked loop, loaded once (its brick grid takes
        seconds to build) for the videos and the viewer's scores."""
        if "r" not in viewer:
            from loopnerf.viewer.renderer import Renderer

            viewer["r"] = Renderer(r.baked_path, 8, 8)
        return viewer["r"]

    def orbit():
        """The novel orbit as the viewer draws it (`_orbit_frames`), rendered once for
        loop.mp4 and for its scores against the truth."""
        if "orbit" not in viewer:
            viewer["orbit"] = _orbit_frames(renderer(), dp.video_size, dp.orbit_seconds)
        return viewer["orbit"]

    def do_videos():
        from loopnerf.video import write_video

        frames, _, _, fps = orbit()
        write_video(out / "loop.mp4", frames, fps)
        write_video(out / "loop.gif", frames, fps)
        write_compare(out / "compare.mp4", cap_dir, run, fps)
        return f"loop.mp4 / loop.gif ({len(frames)} frames), compare.mp4"

    st.run("render", (out / "compare.mp4").is_file() and (out / "loop.gif").is_file(), do_videos)

    def do_viewer_truth():
        res = viewer_truth(out, cap_dir, run, dp.video_size, dp.orbit_seconds, renderer(), orbit())
        return f"novel orbit static PSNR vs truth: mean {res['orbit']['mean']:.2f} dB, worst {res['orbit']['worst']:.2f} dB"

    st.run("viewer-truth", r.viewer_truth_path.is_file(), do_viewer_truth)

    def do_eval():
        res = r.evaluate()
        shutil.copy(r.scanlines_png, out / r.scanlines_png.name)
        m = res["loops"]["loop"]
        return f"loop seam ratio {m['seam_ratio']:.2f}, coherence {m['coherence']:.4f}"

    st.run("eval", r.eval_path.is_file(), do_eval)
    report["total_seconds"] = time.perf_counter() - t_start
    write_report(out, run, report)
    print(f"\ndone: {out / 'report.md'}\n  videos: {out / 'loop.mp4'}, {out / 'loop.gif'}, {out / 'compare.mp4'}")
    print(f"  open the viewer:  loopnerf view {r.baked_path}")
    return 0


def viewer_truth(out: Path, cap_dir: Path, run: Path, size: int, seconds: float, renderer=None, orbit=None) -> dict:
    """Score what the viewer shows against the synthetic truth: the novel orbit of
    loop.mp4 (static region, per frame) and the gt cameras; writes RUN/viewer_truth.json.
    `renderer`: the viewer's `Renderer` of RUN's baked loop, if one is loaded already;
    `orbit`: that renderer's `_orbit_frames(renderer, size, seconds)`, if drawn already."""
    from loopnerf.evaluation.viewer_truth import orbit_static_psnr, viewer_truth_table
    from loopnerf.synth.truth_views import true_orbit
    from loopnerf.viewer.renderer import Renderer

    from loopnerf.run_folder import RunFolder

    folder = RunFolder(run)
    meta = json.loads((cap_dir / "gt" / "meta.json").read_text())
    renderer = renderer or Renderer(folder.baked_path, 8, 8)
    frames, poses, k, _ = orbit or _orbit_frames(renderer, size, seconds)
    truth, moving = true_orbit(meta, poses, k, range(len(poses)))
    res = {"orbit": orbit_static_psnr(np.stack(frames), truth, moving),
           "cameras": viewer_truth_table(renderer, cap_dir, meta), "renderer": renderer.describe()}
    save_json_atomic(folder.viewer_truth_path, res)
    return res


def write_compare(path: Path, cap_dir: Path, run: Path, fps: float, cycles: int = 3) -> None:
    """Side by side at the supervised ground-truth camera: truth | stage 1 | loop."""
    import imageio.v3 as iio

    from loopnerf.data.capture import Intrinsics
    from loopnerf.distill.loop_model import render_loop_frames
    from loopnerf.model.render_image import render_video
    from loopnerf.run_folder import RunFolder
    from loopnerf.video import write_video

    folder = RunFolder(run)
    meta = json.loads((cap_dir / "gt" / "meta.json").read_text())
    cam = meta["cameras"]["supervised"]
    intr = Intrinsics.from_dict(cam["intrinsics"])
    c2w = np.asarray(cam["c2w"])
    truth = [iio.imread(cap_dir / "gt" / f)[..., :3] for f in cam["frames"]]
    stage1, _ = folder.load_stage1()
    s1 = list((render_video(stage1, c2w, intr, meta["gt_frame_times"]) * 255).astype(np.uint8))
    loop, _ = folder.load_loop_model("loop")
    lp = (render_loop_frames(loop, c2w, intr, loop.frames) * 255).astype(np.uint8)
    n = max(len(truth), len(lp)) * cycles
    frames = []
    for i in range(n):
        row = np.concatenate([truth[i % len(truth)], s1[i % len(s1)], lp[i % len(lp)]], axis=1)
        frames.append(np.kron(row, np.ones((2, 2, 1), dtype=np.uint8)) if row.shape[0] < 128 else row)
    write_video(path, frames, fps)


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def ground_truth_motion_lines(ev: dict) -> list[str]:
    """report.md lines on motion against the ground truth: motion ratios and best-phase PSNR
    of the moving pixels at the test cameras, the still-stretch scores against the true
    states (stage 1, loop, naive), and a summary at the supervised still camera."""
    gt = ev["ground_truth"]
    names = list(ev["loops"])
    lines = [f"Capture motion: **{gt.get('motion', 'periodic')}** (period {gt['period_frames']} frames at the mean tempo).", ""]
    lines += ["### Motion at the test cameras (against the true uniform cycle at mean amplitude)", "",
              "Motion ratio = mean temporal std of the moving pixels, render ÷ truth (1 = full amplitude).", "",
              "| camera | " + " | ".join(f"{n} best-phase PSNR moving (dB) / motion ratio" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for cam, row in gt["cameras"].items():
        cells = [cam] + [f"{_fmt(row[n].get('best_phase_psnr_moving'))} / {_fmt(row[n].get('motion_ratio'))}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    stills = gt.get("stills") or []
    if stills:
        lines += ["### At the still stretches (against the true states the capture showed there)", "",
                  "Per entry: motion ratio / coherence / completeness / static PSNR vs truth (dB); stage 1 also its "
                  "moving-pixel PSNR frame by frame; loops also static PSNR vs the stage-1 render.", "",
                  "| still (frames) | stage 1 | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for st in stills:
            s1 = st["stage1"]
            cells = [f"{st['index']} ({st['start']}-{st['stop'] - 1})",
                     f"{_fmt(s1.get('motion_ratio'))} / {_fmt(s1['coherence'], '.4f')} / {_fmt(s1['completeness'], '.4f')} / "
                     f"{_fmt(s1['static_psnr'])}; moving {_fmt(s1.get('moving_psnr'))}"]
            for n in names:
                r = st[n]
                cells.append(f"{_fmt(r.get('motion_ratio'))} / {_fmt(r['coherence'], '.4f')} / {_fmt(r['completeness'], '.4f')} / "
                             f"{_fmt(r['static_psnr'])}; vs stage 1 {_fmt(r['static_psnr_vs_stage1'])}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    sup = gt.get("supervised_still")
    if sup is not None and "supervised" in gt["cameras"] and "loop" in names:
        st, cam = stills[sup], gt["cameras"]["supervised"]
        lines += ["### Summary at the supervised still camera", "", "| | stage 1 | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        lines.append("| moving pixels: PSNR vs true states (stage 1) / best-phase PSNR vs true cycle (loops), dB | "
                     + _fmt(st["stage1"].get("moving_psnr")) + " | " + " | ".join(_fmt(cam[n].get("best_phase_psnr_moving")) for n in names) + " |")
        ref = cam.get("references") or {}
        if "stage1_windows_mean" in ref:
            lines.append("| moving pixels: best-phase PSNR vs true cycle, every F-frame window of stage 1 as a loop (mean / best; loops as above), dB | "
                         + f"{_fmt(ref['stage1_windows_mean'])} / {_fmt(ref['stage1_windows_max'])} | "
                         + " | ".join(_fmt(cam[n].get("best_phase_psnr_moving")) for n in names) + " |")
        lines.append("| motion ratio vs true states | " + _fmt(st["stage1"].get("motion_ratio")) + " | "
                     + " | ".join(_fmt(st[n].get("motion_ratio")) for n in names) + " |")
        lines.append("| static region vs truth, dB | " + _fmt(st["stage1"]["static_psnr"]) + " | "
                     + " | ".join(_fmt(st[n]["static_psnr"]) for n in names) + " |")
        lines.append("| static region vs the stage-1 render, dB | - | " + " | ".join(_fmt(st[n]["static_psnr_vs_stage1"]) for n in names) + " |")
        novel = gt["cameras"].get("novel")
        if novel is not None:
            lines.append("| static region vs truth at the novel camera, dB | " + _fmt(novel.get("stage1_static_psnr")) + " | "
                         + " | ".join(_fmt(novel[n]["static_psnr"]) for n in names) + " |")
        lines.append("| seam ratio (at the supervised camera) | - | " + " | ".join(_fmt(cam[n].get("seam_ratio")) for n in names) + " |")
        lines.append("")
        if ref:
            lines += [f"For scale, the same best-phase PSNR of the moving pixels for loops made from the true states: "
                      f"standing still at their mean {_fmt(ref['standing_still'])} dB; a window of consecutive true states "
                      f"{_fmt(ref['true_windows_min'])}-{_fmt(ref['true_windows_max'])} dB (mean {_fmt(ref['true_windows_mean'])}).", ""]
    return lines


def write_report(out: Path, run: Path, report: dict) -> None:
    """report.md: stage-1 PSNR, loop metrics vs the naive baseline, sizes, wall times."""
    from loopnerf.run_folder import RunFolder

    folder = RunFolder(run)
    ev1, ev, bake = folder.read_stage1_eval(), folder.read_eval(), folder.read_bake_summary()
    lines = [f"# LoopNeRF demo report (preset `{report['preset']}`)", ""]
    lines += ["![scanlines](scanlines.png)", "", "## Stage 1", "", f"- held-out PSNR {ev1['psnr']:.2f} dB, SSIM {ev1['ssim']:.3f} ({len(ev1['frames'])} frames)"]
    if "dynamic_fraction" in ev1:
        lines.append(f"- dynamic region (where the time planes act, estimated from the still stretches): {100 * ev1['dynamic_fraction']:.1f} % of the box")
    meta_path = out / "capture" / "gt" / "meta.json"
    if meta_path.exists():
        synth_cfg = json.loads(meta_path.read_text()).get("config", {})
        lines.append(f"- capture: {synth_cfg.get('motion', 'periodic')} motion, {synth_cfg.get('backdrop', 'near')} backdrop")
    contraction = folder.read_stage1_config()["config"]["model"]["contraction"]
    lines.append(f"- field: {'unbounded (contraction mipnerf360)' if contraction == 'mipnerf360' else 'bounded (contraction none)'}")
    lines.append("")
    lines += ["## Loop vs naive baseline (at the longest still segment)", "", "| metric | " + " | ".join(ev["loops"]) + " |", "|---|" + "---|" * len(ev["loops"])]
    keys = ["time_parameters", "static_psnr", "stderr", "completeness", "coherence", "loopq", "seam_ratio", "motion_ratio"]
    for key in keys:
        vals = [ev["loops"][n].get(key) for n in ev["loops"]]
        lines.append(f"| {key} | " + " | ".join("-" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4g}") for v in vals) + " |")
    lines += ["", f"Stage-1 time-dependent parameters: {ev['stage1_time_parameters']:,}.", ""]
    if "ground_truth" in ev:
        lines += ["## Against ground truth (best cyclic phase PSNR, dB)", "", "| camera | stage 1 static | " + " | ".join(f"{n} all / moving / static" for n in ev["loops"]) + " |", "|---|---|" + "---|" * len(ev["loops"])]
        for cam, row in ev["ground_truth"]["cameras"].items():
            cells = [cam, f"{row.get('stage1_static_psnr', float('nan')):.2f}"]
            for n in ev["loops"]:
                r = row[n]
                cells.append(f"{r['best_phase_psnr']:.2f} / {r.get('best_phase_psnr_moving', float('nan')):.2f} / {r['static_psnr']:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += ground_truth_motion_lines(ev)
    if folder.viewer_truth_path.is_file():
        from loopnerf.evaluation.viewer_truth import viewer_truth_lines

        lines += viewer_truth_lines(json.loads(folder.viewer_truth_path.read_text()))
    b = bake["bytes"]
    lines += ["## Sizes", "", f"- scene.loop: {b['scene.loop'] / 1e6:.2f} MB", f"- stage-1 weights: {(b['stage1'] or 0) / 1e6:.2f} MB", f"- loop planes checkpoint: {b['loop_checkpoint'] / 1e6:.2f} MB", ""]
    lines += ["## Wall time per stage (this run)", "", "| stage | seconds |", "|---|---|"]
    for k, v in report.get("seconds", {}).items():
        lines.append(f"| {k} | {v:.1f} |")
    lines += [f"| total | {report['total_seconds']:.1f} |", ""]
    lines += ["Files: `loop.mp4`, `loop.gif` (novel orbit), `compare.mp4` (truth / stage 1 / loop), `scanlines.png`, `segments.png`, `run/scene.loop`.", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps({**report, "stage1": {"psnr": ev1["psnr"], "ssim": ev1["ssim"]}, "eval": ev, "bake": bake}, indent=1))
