"""The capture a run was fitted to: the one named in RUN/stage1/config.json.

`loopnerf train` writes the capture's path and load options into the stage-1 config
("capture", "capture_options"); whatever needs the capture's cameras again later
(the bake's visibility culling) reads them back here, with clear errors.
"""

from __future__ import annotations

import json
from pathlib import Path

from loopnerf.errors import ConfigError


def stage1_capture(run: Path):
    """The `Capture` named in RUN/stage1/config.json (images, cameras, times)."""
    from loopnerf.data import load_capture

    path, options = stage1_capture_ref(run)
    return load_capture(path, **options)


def stage1_capture_ref(run: Path) -> tuple[str, dict]:
    """(capture path, load options) as RUN/stage1/config.json names them."""
    config_path = Path(run) / "stage1" / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found (run `loopnerf train` for this run first)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{config_path}: not valid JSON ({err})") from None
    if "capture" not in config:
        raise ConfigError(f"{config_path}: field 'capture' is missing")
    options = config.get("capture_options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{config_path}: field 'capture_options' must be an object")
    return str(config["capture"]), options
