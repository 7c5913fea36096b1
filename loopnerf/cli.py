"""The `loopnerf` command: one program, one sub-command per stage.

Each sub-command is a plain function with typed, documented arguments, or a command
dataclass (stage 1 and distillation: the shortcut flags plus the stage's whole config
under `--config.*`, defaults taken from the chosen preset by its `cli_default(args)`,
run by calling the parsed object); tyro turns either into a command line, so `--help`
shows every option with its type, default, choices and the docstring's explanation. Only the chosen sub-command's module is imported, so
`loopnerf --help` stays fast and a sub-command pulls in torch or taichi only if it
needs them.

To add a sub-command: append it to `COMMANDS` as `name: (module, function, summary)`.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, function, one-line summary). Only commands that are built appear.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("loopnerf.demo", "demo", "The whole job on the built-in synthetic capture: videos, a baked loop and a report."),
    "synth": ("loopnerf.synth.command", "synth", "Render the built-in synthetic capture (exactly periodic motion, ground truth)."),
    "process": ("loopnerf.process.command", "process", "Recover camera poses of a phone video (pycolmap) and write a nerfstudio capture."),
    "info": ("loopnerf.info", "info", "Print what a capture, run folder, checkpoint or baked .loop file holds."),
    "train": ("loopnerf.model.train", "TrainCommand", "Stage 1: fit a dynamic k-Planes field to a capture."),
    "select": ("loopnerf.select", "select", "Find the still segments of a run's camera path (segments.json + segments.png)."),
    "distill": ("loopnerf.distill.train", "DistillCommand", "Stage 2: distill the fitted field into a loop of F frames (looping loss)."),
    "eval": ("loopnerf.evaluation.command", "eval_command", "Score a run's loops: static PSNR, STDerr, completeness, coherence, LoopQ, seam ratio."),
    "bake": ("loopnerf.export.bake_run", "bake", "Bake a run's loop into a compact .loop file for the viewer and exports."),
    "view": ("loopnerf.viewer.command", "view", "Play a baked .loop forever in a window (or render it headless to mp4/gif)."),
    "render": ("loopnerf.render", "render", "Render a camera file from a run (fit or loop) or a baked .loop."),
    "export": ("loopnerf.export.command", "export", "Export a baked .loop for other engines: glTF (.glb), a three.js web page, PLY sequence, VideoLoop3D layers."),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: loopnerf COMMAND [options]",
        "",
        "LoopNeRF turns a video with repeating motion into an endless 3D video loop.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, _, summary) in COMMANDS.items()]
    lines += ["", "Run `loopnerf COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `loopnerf` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        from loopnerf import __version__

        print(f"loopnerf {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"loopnerf: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func_name, _ = COMMANDS[name]
    import tyro

    from loopnerf.errors import LoopNeRFError

    func = getattr(importlib.import_module(module), func_name)
    try:
        if isinstance(func, type):  # a command dataclass: parse, then run the parsed command
            default = func.cli_default(rest) if hasattr(func, "cli_default") else None
            result = tyro.cli(func, args=rest, prog=f"loopnerf {name}", default=default)()
        else:
            result = tyro.cli(func, args=rest, prog=f"loopnerf {name}")
    except LoopNeRFError as err:
        print(f"loopnerf {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nloopnerf {name}: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
