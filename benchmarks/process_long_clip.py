"""`loopnerf process` on a long clip: time and peak memory for 60 s of 1080p video at 540p.

    .venv/bin/python benchmarks/process_long_clip.py [--downscale 2] [--fps 2] [--threads 1]
        [--renders 360] [--supersample 1] [--clip PATH] [--keep DIR]

Two parts:

1. The clip (made once, cached in ~/.cache/loopnerf/): 60 s of 1920 x 1080 H.264 at
   30 fps of the project's synthetic scene (`loopnerf.synth`: open3d ray casting of
   textured meshes, the waving flag included) filmed by a slow handheld-style arc:
   the camera sweeps 70 degrees of azimuth around the scene in 60 s (eased at both
   ends), its height and distance drift slowly, and a handheld shake (sinusoids of
   0.7-5 s periods: about 1 cm of position, 0.3 degrees of aim, 0.5 degrees of roll,
   the scene being 2 units = "2 m" across) rides on top. Ray casting 1800 frames at
   1080p is too slow for a benchmark, so `--renders` distinct frames are rendered (in
   strips, to bound memory) and each is held for 1800 / renders video frames; each is
   streamed into ffmpeg (imageio-ffmpeg) as soon as it is rendered. With the default
   --fps 2 every extracted frame is a distinct render as long as renders >= 120.
2. `loopnerf process CLIP --out DIR --downscale 2 --fps 2 --threads T` in a subprocess
   (the CLI as a user runs it). The benchmark samples the resident memory of
   the child's process tree (the Python process and its ffmpeg decoder, summed) every
   0.1 s from /proc, attributes the samples to the command's steps (it prints one line
   per finished step on stderr when stderr is not a terminal), and takes the child's
   own peak (getrusage of the waited child: the largest single process of the tree).
   The sampled figures are also given for anonymous memory alone (RssAnon: heap,
   stacks; without file-backed pages such as the memory-mapped frames the command
   stacks into a scratch .npy file before writing the capture, which the kernel can
   drop under pressure).

Prints one JSON line per figure:
* `clip`: how the clip was made (render, encode and total seconds; 0 when cached);
* `process_long_clip`: frames decoded / extracted / registered, reprojection error, the
  recovered field of view and poses against the true ones (`pose_error`, after the best
  similarity transform: camera-centre RMSE in world units, the scene being 2 across,
  and rotation RMSE in degrees; synthetic clip only), wall
  time of the command, peak RSS (`peak_rss_mib`: getrusage of the child, the largest
  single process; `peak_tree_rss_mib`: sampled sum over the child's process tree;
  `peak_tree_anon_mib`: the same for anonymous memory only), and the machine's total
  memory;
* `process_step`: one per step of the command: its seconds (from the command's
  process.json) and the sampled peak tree RSS (and anonymous RSS) during it.

The machine's cores are shared: run it as `OMP_NUM_THREADS=1 taskset -c 1 ...` with
`--threads 1` to keep it on one core (the default threads value, 1, is what the
recorded figures used; -1 = all cores, as `loopnerf process` defaults to).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SECONDS = 60.0
VIDEO_FPS = 30
WIDTH, HEIGHT = 1920, 1080
HFOV_DEG = 60.0  # horizontal field of view of the synthetic camera (a phone's main camera is ~65)
CLIP_VERSION = 1  # bump when the clip's recipe changes (new cache file name)


# --------------------------------------------------------------------------- the clip
def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loopnerf"


def clip_name(renders: int, supersample: int, seed: int, scene: str, crf: int) -> str:
    return (
        f"process_long_clip_v{CLIP_VERSION}_{int(SECONDS)}s_{WIDTH}x{HEIGHT}_{VIDEO_FPS}fps_"
        f"{scene}_r{renders}_ss{supersample}_seed{seed}_crf{crf}.mp4"
    )


def shake(t: np.ndarray, rng: np.random.Generator, amplitude: float, dims: int) -> np.ndarray:
    """[len(t), dims] smooth handheld shake: per dimension three sinusoids of 0.7-5 s
    periods at random phases, summed and scaled so that each has peak `amplitude` / 3."""
    periods = rng.uniform(0.7, 5.0, (1, dims, 3))
    phases = rng.uniform(0.0, 2 * np.pi, (1, dims, 3))
    return amplitude / 3.0 * np.sin(2 * np.pi * t[:, None, None] / periods + phases).sum(axis=2)


def camera_arc(times: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, 4, 4] camera-to-world (OpenGL axes) of the handheld arc at `times` seconds."""
    from loopnerf.synth.camera_path import look_at
    from loopnerf.synth.scene import LOOK_AT

    rng = np.random.default_rng([seed, 11])
    u = np.clip(times / SECONDS, 0.0, 1.0)
    s = 0.5 * u + 0.5 * (0.5 - 0.5 * np.cos(np.pi * u))  # half linear, half eased: slow at both ends
    az = np.radians(-35.0 + 70.0 * s)
    el = np.radians(22.0 + 5.0 * np.sin(2 * np.pi * 0.8 * u + 0.3))
    rad = 2.75 + 0.12 * np.sin(2 * np.pi * 1.3 * u + 1.0)
    eye = np.asarray(LOOK_AT) + rad[:, None] * np.stack(
        [np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], 1
    )
    eye = eye + shake(times, rng, 0.012, 3)  # ~1 cm of hand tremor (the scene is 2 units across)
    target = np.asarray(LOOK_AT) + shake(times, rng, 0.015, 3)  # ~0.3 degrees of aim at 2.75 units
    roll = np.radians(shake(times, rng, 0.5, 1)[:, 0])
    out = []
    for e, tg, r in zip(eye, target, roll):
        m = look_at(e, tg)
        c, sn = math.cos(r), math.sin(r)
        x, y = m[:3, 0].copy(), m[:3, 1].copy()
        m[:3, 0], m[:3, 1] = c * x + sn * y, -sn * x + c * y  # roll about the viewing axis
        out.append(m)
    return np.stack(out)


def render_1080p(parts, c2w: np.ndarray, supersample: int, strips: int = 4) -> np.ndarray:
    """uint8 [1080, 1920, 3] of `parts` seen from `c2w`, ray cast in horizontal strips
    (each strip is a camera with the same focal length and a shifted principal point)."""
    from loopnerf.data.capture import Intrinsics
    from loopnerf.data.images import to_uint8
    from loopnerf.synth.raycast import render_view

    f = 0.5 * WIDTH / math.tan(math.radians(HFOV_DEG) / 2)
    bounds = np.linspace(0, HEIGHT, strips + 1).round().astype(int)
    rows = []
    for y0, y1 in zip(bounds[:-1], bounds[1:]):
        k = Intrinsics(f, f, WIDTH / 2, HEIGHT / 2 - y0, WIDTH, int(y1 - y0))
        rows.append(to_uint8(render_view(parts, c2w, k, supersample=supersample)))
    return np.concatenate(rows)


def make_clip(path: Path, renders: int, supersample: int, seed: int, scene: str, crf: int,
              preset: str = "veryfast", flag_period_s: float = 4.0) -> dict:
    """Render `renders` distinct 1080p frames along the arc and stream them (each held for
    its share of the 1800 video frames) into an H.264 mp4 at `path`; returns timings."""
    import imageio_ffmpeg

    from loopnerf.synth.scene import SyntheticScene

    n_video = int(round(SECONDS * VIDEO_FPS))
    per_second = renders / SECONDS
    period = max(2, int(round(flag_period_s * per_second)))  # the flag waves once per ~4 s
    sc = SyntheticScene(scene, period, seed)
    first_video_frame = [int(math.ceil(j * n_video / renders)) for j in range(renders)]  # render j starts here
    c2w = camera_arc(np.asarray(first_video_frame, float) / VIDEO_FPS, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part.mp4")
    writer = imageio_ffmpeg.write_frames(
        str(part), (WIDTH, HEIGHT), fps=VIDEO_FPS, codec="libx264", quality=None, macro_block_size=1,
        output_params=["-crf", str(crf), "-preset", preset], ffmpeg_log_level="error",
    )
    writer.send(None)
    t_render = t_encode = 0.0
    started = time.perf_counter()
    written = 0
    for j in range(renders):
        t0 = time.perf_counter()
        img = render_1080p(sc.parts(j), c2w[j], supersample)
        t1 = time.perf_counter()
        stop = n_video if j == renders - 1 else first_video_frame[j + 1]
        for _ in range(stop - first_video_frame[j]):
            writer.send(img)
            written += 1
        t_encode += time.perf_counter() - t1
        t_render += t1 - t0
        if (j + 1) % max(1, renders // 20) == 0:
            done = time.perf_counter() - started
            print(f"# clip: {j + 1}/{renders} frames rendered, {done:.0f} s", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    writer.close()
    t_encode += time.perf_counter() - t0
    part.replace(path)
    return {
        "render_s": round(t_render, 1),
        "encode_s": round(t_encode, 1),  # time blocked sending frames to ffmpeg, and its finish
        "total_s": round(time.perf_counter() - started, 1),
        "video_frames": written,
        "flag_period_renders": period,
    }


def true_poses(frame_index: np.ndarray, renders: int, seed: int) -> np.ndarray:
    """[M, 4, 4] the camera-to-world the clip was rendered with at video frames `frame_index`."""
    n_video = int(round(SECONDS * VIDEO_FPS))
    first = np.array([int(math.ceil(j * n_video / renders)) for j in range(renders)])
    j = np.searchsorted(first, np.asarray(frame_index), side="right") - 1
    return camera_arc(first[j].astype(float) / VIDEO_FPS, seed)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |s R src_i + t - dst_i|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    e = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[2, 2] = -1
    r = u @ e @ vt
    scale = float(np.trace(np.diag(d) @ e) / (a**2).sum(1).mean())
    return scale, r, mu_d - scale * r @ mu_s


def pose_accuracy(capture: Path, renders: int, seed: int) -> dict:
    """Recovered poses against the ones the clip was rendered with, after the best
    similarity (COLMAP's world is arbitrary up to scale): camera-centre error (world
    units, the scene is 2 across; and as a fraction of the path length) and viewing
    rotation error (degrees)."""
    meta = json.loads((capture / "transforms.json").read_text())
    est = np.array([f["transform_matrix"] for f in meta["frames"]], dtype=np.float64)
    true = true_poses(np.array(meta["loopnerf_process"]["frame_index"]), renders, seed)
    scale, r, t = umeyama(est[:, :3, 3], true[:, :3, 3])
    centres = scale * est[:, :3, 3] @ r.T + t
    err = np.linalg.norm(centres - true[:, :3, 3], axis=1)
    path_len = float(np.linalg.norm(np.diff(true[:, :3, 3], axis=0), axis=1).sum())
    rel = np.einsum("nji,njk->nik", true[:, :3, :3], r @ est[:, :3, :3])  # R_true^T (R R_est)
    ang = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return {
        "centre_rmse": round(float(np.sqrt((err**2).mean())), 5),
        "centre_max": round(float(err.max()), 5),
        "centre_rmse_of_path": round(float(np.sqrt((err**2).mean())) / path_len, 6),
        "rotation_rmse_deg": round(float(np.sqrt((ang**2).mean())), 4),
        "rotation_max_deg": round(float(ang.max()), 4),
        "path_length": round(path_len, 3),
    }


# --------------------------------------------------------------------------- memory sampling
def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) in KiB summed over `pid` and all its descendants ((0, 0) once
    it is gone). RssAnon leaves out file-backed pages (mapped libraries, memory-mapped
    files), which the kernel can drop or write back under memory pressure."""
    total, anon, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total, anon


class Sampler(threading.Thread):
    """Samples the child's process-tree RSS every `interval` s; `steps` marks step ends."""

    STEP_LINE = re.compile(r"^loopnerf process: (.+): [0-9.]+ s$")

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int]] = []  # (seconds since start, RSS KiB, anonymous KiB)
        self.step_ends: list[tuple[float, str]] = []  # (seconds since start, step name)
        self.start_time = time.perf_counter()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.samples.append((time.perf_counter() - self.start_time, *tree_rss_kib(self.pid)))
            self.stop_flag.wait(self.interval)

    def read_stderr(self, stream, sink: list) -> None:
        for line in stream:
            sink.append(line)
            m = self.STEP_LINE.match(line.strip())
            if m:
                self.step_ends.append((time.perf_counter() - self.start_time, m.group(1)))

    def step_peaks_mib(self) -> dict:
        """Step name -> (peak sampled tree RSS, peak anonymous RSS) in MiB between the
        previous step's end and its own."""
        out, start = {}, 0.0
        for end, name in self.step_ends:
            vals = [(kib, anon) for t, kib, anon in self.samples if start <= t <= end]
            out[name] = (
                round(max(v[0] for v in vals) / 1024.0, 1) if vals else None,
                round(max(v[1] for v in vals) / 1024.0, 1) if vals else None,
            )
            start = end
        return out


def loopnerf_command() -> list:
    exe = Path(sys.executable).with_name("loopnerf")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "loopnerf.cli"]


def run_process(clip: Path, out: Path, args, synthetic: bool = True) -> dict:
    """Run `loopnerf process` on `clip` in a subprocess; wall time, memory and its summary."""
    cmd = loopnerf_command() + [
        "process", str(clip), "--out", str(out), "--downscale", str(args.downscale), "--threads", str(args.threads),
        "--overwrite",
    ]
    if args.fps is not None:
        cmd += ["--fps", str(args.fps)]
    if args.max_frames is not None:
        cmd += ["--max-frames", str(args.max_frames)]
    cmd += args.extra
    print("# running: " + " ".join(cmd), file=sys.stderr, flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(child.pid)
    sampler.start()
    err_lines: list = []
    out_lines: list = []
    t_err = threading.Thread(target=sampler.read_stderr, args=(child.stderr, err_lines), daemon=True)
    t_out = threading.Thread(target=lambda: out_lines.extend(child.stdout), daemon=True)
    t_err.start()
    t_out.start()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (not earlier children's)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop_flag.set()
    sampler.join()
    t_err.join()
    t_out.join()
    sys.stderr.write("".join(err_lines))
    sys.stdout.flush()
    summary = {}
    if (out / "process.json").is_file():
        summary = json.loads((out / "process.json").read_text())
    accuracy = None
    if synthetic and child.returncode == 0:
        accuracy = pose_accuracy(out, args.renders, args.seed)
    peak_tree = max((kib for _, kib, _ in sampler.samples), default=0) / 1024.0
    peak_anon = max((anon for _, _, anon in sampler.samples), default=0) / 1024.0
    return {
        "returncode": child.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
        "peak_tree_rss_mib": round(peak_tree, 1),
        "peak_tree_anon_mib": round(peak_anon, 1),
        "samples": len(sampler.samples),
        "step_peak_tree_rss_mib": sampler.step_peaks_mib(),
        "cpu_user_s": round(usage.ru_utime, 1),
        "cpu_sys_s": round(usage.ru_stime, 1),
        "stdout": "".join(out_lines).strip(),
        "stderr_tail": "".join(err_lines)[-2000:],
        "summary": summary,
        "accuracy": accuracy,
    }


def machine_memory_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=None, help="process this video instead of the synthetic clip")
    ap.add_argument("--renders", type=int, default=360, help="distinct frames ray cast for the 1800-frame clip")
    ap.add_argument("--supersample", type=int, default=1,
                    help="rays per pixel side when ray casting at 1080p (1 is anti-aliased to 2 x 2 by --downscale 2)")
    ap.add_argument("--scene", default="flag", help="synthetic scene: flag, windmill, water or all")
    ap.add_argument("--seed", type=int, default=0, help="scene palette and handheld shake seed")
    ap.add_argument("--crf", type=int, default=18, help="H.264 constant rate factor of the clip (lower = better)")
    ap.add_argument("--remake", action="store_true", help="render the clip again even if it is cached")
    ap.add_argument("--clip-only", action="store_true", help="make (or find) the clip and stop")
    ap.add_argument("--downscale", type=float, default=2.0, help="loopnerf process --downscale (2: 1080p -> 540p)")
    ap.add_argument("--fps", type=float, default=2.0, help="loopnerf process --fps (2: 120 frames of 60 s)")
    ap.add_argument("--max-frames", type=int, default=None, help="loopnerf process --max-frames")
    ap.add_argument("--threads", type=int, default=1, help="loopnerf process --threads (COLMAP; -1 = all)")
    ap.add_argument("--keep", type=Path, default=None, help="write the capture here and keep it (default: a temp dir)")
    ap.add_argument("extra", nargs="*", help="further loopnerf process options (after --)")
    args = ap.parse_args()

    if args.clip is not None:
        clip = args.clip
        clip_fig = {"benchmark": "clip", "clip": str(clip), "made": False}
    else:
        if args.renders < 2 or args.renders > SECONDS * VIDEO_FPS:
            ap.error(f"--renders must be in [2, {int(SECONDS * VIDEO_FPS)}]")
        clip = cache_dir() / clip_name(args.renders, args.supersample, args.seed, args.scene, args.crf)
        clip_fig = {"benchmark": "clip", "clip": str(clip), "renders": args.renders, "supersample": args.supersample,
                    "scene": args.scene, "crf": args.crf}
        if clip.is_file() and not args.remake:
            clip_fig.update(made=False, total_s=0.0)
        else:
            print(f"# making the clip {clip} (once; ray casting {args.renders} frames at 1080p)",
                  file=sys.stderr, flush=True)
            clip_fig.update(made=True, **make_clip(clip, args.renders, args.supersample, args.seed, args.scene, args.crf))
        clip_fig["size_mib"] = round(clip.stat().st_size / 2**20, 1)
    print(json.dumps(clip_fig), flush=True)
    if args.clip_only:
        return 0

    tmp = None
    if args.keep is not None:
        out = args.keep
    else:
        tmp = Path(tempfile.mkdtemp(prefix="loopnerf_process_bench_"))
        out = tmp / "capture"
    try:
        res = run_process(clip, out, args, synthetic=args.clip is None)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    s = res["summary"]
    fig = {
        "benchmark": "process_long_clip",
        "clip": f"{SECONDS:.0f}s {WIDTH}x{HEIGHT} {VIDEO_FPS}fps" if args.clip is None else str(clip),
        "video_frames_decoded": s.get("video_frames_decoded"),
        "downscale": args.downscale,
        "fps": args.fps,
        "threads": args.threads,
        "returncode": res["returncode"],
        "image_size": s.get("image_size"),
        "frames_extracted": s.get("frames_extracted"),
        "frames_blurry": s.get("frames_blurry"),
        "frames_registered": s.get("frames_registered"),
        "matcher": s.get("matcher"),
        "reconstructions": s.get("reconstructions"),
        "mean_reprojection_px": s.get("mean_reprojection_error_px"),
        "points3d": s.get("points3d"),
        "horizontal_fov_deg": s.get("horizontal_fov_deg"),
        "true_horizontal_fov_deg": HFOV_DEG if args.clip is None else None,
        "pose_error": res["accuracy"],
        "wall_s": res["wall_s"],
        "command_total_s": s.get("total_s"),
        "cpu_user_s": res["cpu_user_s"],
        "peak_rss_mib": res["peak_rss_mib"],
        "peak_tree_rss_mib": res["peak_tree_rss_mib"],
        "peak_tree_anon_mib": res["peak_tree_anon_mib"],
        "rss_samples": res["samples"],
        "command_peak_memory_mb": s.get("peak_memory_mb"),
        "machine_memory_mib": machine_memory_mib(),
    }
    print(json.dumps(fig), flush=True)
    for name, secs in (s.get("timings_s") or {}).items():
        rss, anon = res["step_peak_tree_rss_mib"].get(name, (None, None))
        print(json.dumps({"benchmark": "process_step", "step": name, "s": secs, "peak_tree_rss_mib": rss,
                          "peak_tree_anon_mib": anon}), flush=True)
    if res["returncode"] != 0:
        print(f"# loopnerf process failed (exit {res['returncode']}):\n{res['stderr_tail']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
