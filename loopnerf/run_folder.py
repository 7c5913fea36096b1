"""The run folder: one place that knows where every file of a run lives and how to read it.

A run is a folder that the stages fill in order (DESIGN §2):

    RUN/
      stage1/       config.json (the stage-1 config, the scene box, the capture's path and
                    load options), ckpt.safetensors (resumable), model.safetensors (final
                    weights), eval.json + eval.png (held-out frames), log.jsonl
      segments.json the still segments of the camera path (`SegmentRecord`s), segments.png
      segments/     NN.npy (float16 [T, H, W, 3] segment videos, what distillation reads), NN.mp4
      loop/         the distilled loop: config.json, ckpt.safetensors, model.safetensors,
                    summary.json, log.jsonl
      naive/        the t mod F baseline, same files
      scene.loop    the baked loop (`loopnerf.export.loop_format`), bake.json its summary
      eval.json     the loop metrics, scanlines.png; viewer_truth.json (the demo's)

`RunFolder` owns that layout: every stage asks it for paths and typed records, so no
other module spells a file name of the run. `loopnerf.Run` (the public Python API) adds
the stages' methods on top. Heavy modules (torch, the models) load only inside the
readers that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from loopnerf.data.capture import Intrinsics
from loopnerf.errors import ConfigError
from loopnerf.json_file import read_json, save_json_atomic

LoopMethod = Literal["loop", "naive"]
"""Which loop of a run: the report's looping distillation or the t mod F baseline."""
LOOP_METHODS: tuple[str, ...] = ("loop", "naive")


@dataclass(frozen=True)
class SegmentRecord:
    """One still segment of the camera path (frames in capture-time order).

    start, stop: its frames [start, stop) in time order; pose: [4, 4] camera-to-world
    (OpenGL axes), the averaged pose of its frames; intrinsics: of its middle frame;
    times: [stop - start] capture times in [0, 1] of its frames.
    """

    start: int
    stop: int
    pose: np.ndarray
    intrinsics: Intrinsics
    times: np.ndarray

    def __len__(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return {
            "start": int(self.start), "stop": int(self.stop), "pose": np.asarray(self.pose, dtype=np.float64).tolist(),
            "intrinsics": self.intrinsics.to_dict(), "times": [float(t) for t in self.times],
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "segment") -> "SegmentRecord":
        try:
            pose = np.asarray(d.get("pose"), dtype=np.float64)
        except (TypeError, ValueError):
            pose = np.zeros(0)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ConfigError(f"{where}.pose is not a finite 4x4 camera-to-world matrix")
        try:
            rec = cls(int(d["start"]), int(d["stop"]), pose, Intrinsics.from_dict(d["intrinsics"], where), np.asarray(d["times"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{where}: not a segment record ({type(err).__name__}: {err})") from None
        if len(rec.times) != len(rec):
            raise ConfigError(f"{where}.times: one capture time per frame [start, stop) expected, got {len(rec.times)} for {len(rec)}")
        return rec


@dataclass
class Segments:
    """What `loopnerf select` found: the still segments and the options it used."""

    segments: list[SegmentRecord]
    options: dict = field(default_factory=dict)

    def longest(self) -> SegmentRecord:
        """The longest still segment (the default camera of eval, bake and the viewer)."""
        return max(self.segments, key=len)

    def to_dict(self) -> dict:
        return {"segments": [s.to_dict() for s in self.segments], "options": self.options}


def read_segments_file(path: Path, hint: str = "run `loopnerf select RUN` first") -> Segments:
    """A segments file (RUN/segments.json, or a copy of one) as records; ConfigError when
    it is missing, malformed or holds no segment."""
    path = Path(path)
    data = read_json(path, "segments file", hint)
    if not isinstance(data, dict) or not isinstance(data.get("segments", []), list):
        raise ConfigError(f"{path}: not a segments file (expected {{\"segments\": [...]}})")
    recs = [SegmentRecord.from_dict(s, f"{path}: segments[{i}]") if isinstance(s, dict) else None for i, s in enumerate(data.get("segments", []))]
    if any(r is None for r in recs):
        raise ConfigError(f"{path}: every segment must be an object")
    if not recs:
        raise ConfigError(f"{path}: holds no still segment; rerun `loopnerf select` with relaxed thresholds")
    return Segments(recs, data.get("options", {}))


class RunFolder:
    """The files of one run folder (see the module docstring for the layout).

    Paths are properties or methods; readers raise `ConfigError` naming the file and the
    command that makes it. Nothing is created until a writer runs.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ stage 1
    @property
    def stage1_dir(self) -> Path:
        return self.path / "stage1"

    @property
    def stage1_config_path(self) -> Path:
        return self.stage1_dir / "config.json"

    @property
    def stage1_checkpoint(self) -> Path:
        """Resumable weights + Adam + RNG state, rewritten every `checkpoint_every` steps."""
        return self.stage1_dir / "ckpt.safetensors"

    @property
    def stage1_weights(self) -> Path:
        """The final stage-1 weights (written when stage 1 finished)."""
        return self.stage1_dir / "model.safetensors"

    @property
    def stage1_eval_path(self) -> Path:
        return self.stage1_dir / "eval.json"

    @property
    def stage1_eval_png(self) -> Path:
        return self.stage1_dir / "eval.png"

    @property
    def stage1_log(self) -> Path:
        return self.stage1_dir / "log.jsonl"

    def has_stage1(self) -> bool:
        """True once `loopnerf train` started here (its config is written first)."""
        return self.stage1_config_path.is_file()

    def stage1_done(self) -> bool:
        return self.stage1_weights.is_file()

    def read_stage1_config(self) -> dict:
        """RUN/stage1/config.json: {"stage", "config" (Stage1Config as a dict), "box", "capture", "capture_options"}."""
        return read_json(self.stage1_config_path, "stage-1 run", "run `loopnerf train` first")

    def write_stage1_config(self, data: dict) -> None:
        save_json_atomic(self.stage1_config_path, data)

    def read_stage1_eval(self) -> dict:
        return read_json(self.stage1_eval_path, "stage-1 evaluation", "stage 1 writes it when it finishes")

    def capture_ref(self) -> tuple[str, dict]:
        """(capture path, load options) of the capture stage 1 was fitted to."""
        config = self.read_stage1_config()
        if "capture" not in config:
            raise ConfigError(f"{self.stage1_config_path}: field 'capture' is missing")
        options = config.get("capture_options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{self.stage1_config_path}: field 'capture_options' must be an object")
        return str(config["capture"]), options

    def load_capture(self):
        """The `Capture` stage 1 was fitted to (images, cameras, times), loaded as it was."""
        from loopnerf.data import load_capture

        path, options = self.capture_ref()
        return load_capture(path, **options)

    def load_stage1(self):
        """(KPlanesModel in eval mode, stage-1 config dict) from the final weights, or from
        the checkpoint of an interrupted run."""
        from loopnerf.model.checkpoint import load_checkpoint
        from loopnerf.model.config import config_from_dict
        from loopnerf.model.kplanes_model import KPlanesModel

        info = self.read_stage1_config()
        model = KPlanesModel(config_from_dict(info["config"]).model, np.asarray(info["box"]))
        load_checkpoint(self.stage1_weights if self.stage1_weights.is_file() else self.stage1_checkpoint, model)
        model.eval()
        return model, info

    # ----------------------------------------------------------------- segments
    @property
    def segments_path(self) -> Path:
        return self.path / "segments.json"

    @property
    def segments_png(self) -> Path:
        return self.path / "segments.png"

    def has_segments(self) -> bool:
        return self.segments_path.is_file()

    def read_segments(self) -> Segments:
        """RUN/segments.json as records; an error when it is missing or holds no segment."""
        return read_segments_file(self.segments_path, f"run `loopnerf select {self.path}` first")

    def write_segments(self, segments: Segments) -> Path:
        save_json_atomic(self.segments_path, segments.to_dict())
        return self.segments_path

    def default_camera(self) -> tuple[np.ndarray, Intrinsics]:
        """(c2w [4, 4], intrinsics) of the longest still segment: the baked default view."""
        seg = self.read_segments().longest()
        return seg.pose, seg.intrinsics

    @property
    def segment_video_dir(self) -> Path:
        return self.path / "segments"

    def segment_video(self, index: int, suffix: str = ".npy") -> Path:
        """RUN/segments/NN.npy (the frames distillation reads) or NN.mp4 (for people)."""
        return self.segment_video_dir / f"{int(index):02d}{suffix}"

    # -------------------------------------------------------------------- loops
    def loop_dir(self, method: str = "loop") -> Path:
        if method not in LOOP_METHODS:
            raise ConfigError(f"unknown loop method {method!r}: use one of {', '.join(LOOP_METHODS)}")
        return self.path / method

    def loop_config_path(self, method: str = "loop") -> Path:
        return self.loop_dir(method) / "config.json"

    def loop_checkpoint(self, method: str = "loop") -> Path:
        return self.loop_dir(method) / "ckpt.safetensors"

    def loop_weights(self, method: str = "loop") -> Path:
        return self.loop_dir(method) / "model.safetensors"

    def loop_summary_path(self, method: str = "loop") -> Path:
        return self.loop_dir(method) / "summary.json"

    def loop_log(self, method: str = "loop") -> Path:
        return self.loop_dir(method) / "log.jsonl"

    def has_loop(self, method: str = "loop") -> bool:
        return self.loop_config_path(method).is_file()

    def loop_done(self, method: str = "loop") -> bool:
        return self.loop_weights(method).is_file()

    def loop_methods(self) -> list[str]:
        """The loops this run holds, in `LOOP_METHODS` order."""
        return [m for m in LOOP_METHODS if self.has_loop(m)]

    def read_loop_config(self, method: str = "loop") -> dict:
        return read_json(self.loop_config_path(method), f"'{method}' loop", "run `loopnerf distill` first")

    def write_loop_config(self, method: str, data: dict) -> None:
        save_json_atomic(self.loop_config_path(method), data)

    def read_loop_summary(self, method: str = "loop") -> dict:
        return read_json(self.loop_summary_path(method), f"'{method}' distillation summary", "distillation writes it when it finishes")

    def load_loop_model(self, method: str = "loop"):
        """(LoopModel in eval mode, loop config dict) of RUN/<method>/ on RUN's stage-1 weights."""
        import torch

        from loopnerf.distill.loop_model import LoopModel
        from loopnerf.model.checkpoint import load_checkpoint

        info = self.read_loop_config(method)
        stage1, _ = self.load_stage1()
        # a loop's base follows its `init` (loops distilled before that option started from ones)
        base = "ones" if info.get("config", {}).get("init", "ones") == "ones" else "mean"
        model = LoopModel(stage1, int(info["frames"]), base=base, base_times=info.get("base_times"))
        holder = torch.nn.Module()
        holder.loop_planes = model.field.loop_planes
        final = self.loop_weights(method)
        load_checkpoint(final if final.is_file() else self.loop_checkpoint(method), holder)
        model.eval()
        return model, info

    # --------------------------------------------------------------- bake, eval
    @property
    def baked_path(self) -> Path:
        """RUN/scene.loop: the baked loop the viewer plays and the exporters read."""
        return self.path / "scene.loop"

    @property
    def bake_summary_path(self) -> Path:
        return self.path / "bake.json"

    def has_bake(self) -> bool:
        return self.baked_path.is_file()

    def read_bake_summary(self) -> dict:
        return read_json(self.bake_summary_path, "bake summary", "run `loopnerf bake` first")

    @property
    def eval_path(self) -> Path:
        """RUN/eval.json: the loop metrics of `loopnerf eval`."""
        return self.path / "eval.json"

    @property
    def scanlines_png(self) -> Path:
        return self.path / "scanlines.png"

    @property
    def viewer_truth_path(self) -> Path:
        return self.path / "viewer_truth.json"

    def read_eval(self) -> dict:
        return read_json(self.eval_path, "loop evaluation", f"run `loopnerf eval {self.path}` first")

    @staticmethod
    def is_run(path: Path | str) -> bool:
        """True for a folder that holds (at least the start of) a stage-1 run."""
        return Path(path).is_dir() and RunFolder(path).has_stage1()
