"""The whole job from a Python script: fit, find the still segments, distil a loop, bake
it, and draw one frame of it with the viewer's renderer.

    .venv/bin/python examples/fit_and_view.py CAPTURE OUT [--preset tiny|cpu|paper]

CAPTURE is any capture LoopNeRF reads (e.g. `loopnerf synth runs/cap` makes one).
"""

import argparse

import imageio.v3 as iio

import loopnerf

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("capture")
parser.add_argument("out")
parser.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
parser.add_argument("--min-length", type=int, default=25, help="shortest still segment, frames")
args = parser.parse_args()

capture = loopnerf.load_capture(args.capture)
run = loopnerf.fit(capture, args.out, preset=args.preset, progress=lambda done, total: print(f"fit {done}/{total}", end="\r"))
print(f"\nstage 1: held-out PSNR {run.read_stage1_eval()['psnr']:.2f} dB")
segments = run.select(min_length=args.min_length)
print(f"{len(segments.segments)} still segments, the longest {len(segments.longest())} frames")
summary = run.distill(preset=args.preset)
print(f"loop: {summary['loop_time_parameters']:,} time parameters ({summary['compression']:.1f}x fewer than stage 1)")
scene = run.bake()
loop = loopnerf.load_loop(scene)
renderer = loopnerf.Renderer(loop, loop.camera["width"], loop.camera["height"])
rgb, depth = renderer.render_phase(loop.camera["c2w"], 0.25)
iio.imwrite(run.path / "frame.png", rgb)
print(f"baked {scene} ({scene.stat().st_size / 1e6:.2f} MB); one frame in {run.path / 'frame.png'}")
