"""JSON files the project writes and reads: atomic writes, reads with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loopnerf.errors import ConfigError


def save_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_json(path: Path, what: str, hint: str = "") -> Any:
    """The JSON in `path`, or a ConfigError that says which file and why (missing, invalid)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (no {what} there" + (f"; {hint})" if hint else ")"))
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
