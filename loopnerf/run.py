"""The Python API: a run folder with the stages as methods.

    import loopnerf

    capture = loopnerf.load_capture("data/flag")          # any supported capture
    run = loopnerf.fit(capture, "runs/flag", preset="cpu")  # stage 1 -> a Run
    run.select()                                           # still segments
    run.distill(frames=24)                                 # stage 2: the loop
    run.bake()                                             # RUN/scene.loop
    renderer = loopnerf.Renderer(run.baked_path, 320, 240)

Each method runs the same code as its `loopnerf` sub-command (the command dataclasses
and functions are the one implementation) and returns what it made instead of printing;
the long ones take `progress=callback`, called as `callback(done, total)`, and show no
progress bar then. `Run` is a `RunFolder`, so every path and reader of the run is there
too (`run.read_segments()`, `run.load_loop_model()`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from loopnerf.choices import Preset
from loopnerf.errors import ConfigError
from loopnerf.run_folder import LoopMethod, RunFolder, Segments

ProgressCallback = Callable[[int, int], None]


class Run(RunFolder):
    """A run folder (new or existing) and the stages that fill it.

    `Run(path)` opens the folder whether or not anything is in it yet; `fit` starts it.
    """

    def fit(self, capture, preset: Preset = "cpu", *, progress: Optional[ProgressCallback] = None, quiet: bool = True, **options) -> dict:
        """Stage 1 on `capture` (a `Capture` from `load_capture`, or a path to one).

        options: `TrainCommand`'s (steps, rays, decoder, time_resolution, kernel,
        background, downscale, resume, skip_nonfinite, seed, config). Returns the held-out
        evaluation ({"psnr", "ssim", "train_seconds", ...})."""
        from loopnerf.model.train import TrainCommand

        path, downscale = _capture_source(capture)
        options.setdefault("downscale", downscale)
        if options.get("resume") and "preset" not in options and self.has_stage1():
            preset = self.read_stage1_config()["config"].get("preset", preset)
        return TrainCommand(capture=path, out=self.path, preset=preset, quiet=quiet, **options).execute(progress)

    def select(self, **options) -> Segments:
        """The still segments of the camera path (writes segments.json + segments.png).
        options: `select`'s (translation_threshold, rotation_threshold, window, min_length)."""
        from loopnerf.select import select_segments

        return select_segments(self.path, **options)

    def distill(
        self, frames: Optional[int] = None, preset: Preset = "cpu", method: LoopMethod = "loop", *,
        progress: Optional[ProgressCallback] = None, quiet: bool = True, **options,
    ) -> dict:
        """Stage 2: a loop of `frames` frames (default the preset's 24) in RUN/<method>/.

        options: `DistillCommand`'s (steps, fps, init, segments, resume, rerender, config).
        Returns the summary (seconds, parameter counts, compression)."""
        from loopnerf.distill.train import DistillCommand

        return DistillCommand(run=self.path, frames=frames, preset=preset, method=method, quiet=quiet, **options).execute(progress)

    def bake(self, out: Optional[Path] = None, method: LoopMethod = "loop", *, progress: Optional[ProgressCallback] = None, quiet: bool = True, **options) -> Path:
        """Bake the loop into a `.loop` file (default RUN/scene.loop); returns its path.
        options: `bake`'s (occupancy_resolution, density_threshold, step_cells, cull, ...)."""
        from loopnerf.export.bake_run import bake_run

        return Path(bake_run(self.path, out, method, quiet=quiet, progress=progress, **options)["file"])

    def evaluate(self, **options) -> dict:
        """Every loop metric of `loopnerf eval` (writes eval.json + scanlines.png)."""
        from loopnerf.evaluation.command import evaluate_run

        return evaluate_run(self.path, **options)

    def renderer(self, width: int = 320, height: int = 240, **options):
        """The viewer's `Renderer` of the baked loop."""
        from loopnerf.viewer import Renderer

        if not self.has_bake():
            raise ConfigError(f"{self.path}: no baked loop yet; call run.bake() first")
        return Renderer(self.baked_path, width, height, **options)


def _capture_source(capture) -> tuple[Path, int]:
    """(path, downscale) of a capture on disk: stage 1 records them so later stages load
    the same frames again."""
    if isinstance(capture, (str, Path)):
        return Path(capture), 1
    load = (getattr(capture, "meta", None) or {}).get("load")
    if not load:
        raise ConfigError("fit() needs a capture on disk: a path, or a Capture from loopnerf.load_capture(path)")
    extra = {k: v for k, v in load.items() if k not in ("path", "downscale") and v is not None and not (k == "background" and tuple(v) == (1.0, 1.0, 1.0))}
    if extra or float(load["downscale"]) != int(load["downscale"]):
        raise ConfigError(f"fit() records a capture by its path and integer downscale only; it was loaded with {extra or load}. Pass the path instead")
    return Path(load["path"]), int(load["downscale"])


def fit(capture, out: Path | str, preset: Preset = "cpu", *, progress: Optional[ProgressCallback] = None, **options) -> Run:
    """Stage 1: fit a dynamic k-Planes field to `capture` in the run folder `out`; the `Run`.

    `capture`: a `Capture` (`load_capture(path)`) or its path; options as `Run.fit`."""
    run = Run(out)
    run.fit(capture, preset, progress=progress, **options)
    return run
