"""The JSON header of a safetensors file, read and checked without loading tensors.

Layout: an 8-byte little-endian header length n, then n bytes of JSON (tensor name ->
dtype, shape, data_offsets; plus an optional `__metadata__` of strings), then the
tensor bytes. Only the standard library is needed (no torch): `loopnerf info` and
the `.loop` reader use it before anything heavy is imported.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from loopnerf.errors import LoopNeRFError

# A safetensors header larger than this is not one we wrote (ours are a few kB):
# refuse before reading it, so a foreign file cannot make us allocate gigabytes.
MAX_HEADER_BYTES = 64 * 1024 * 1024


def read_safetensors_header(path: Path, *, what: str = "a safetensors file", error: type = LoopNeRFError) -> dict[str, Any]:
    """The parsed JSON header of the safetensors file `path`.

    Checks that the file exists, holds a sane header length, a JSON object as header,
    and that every tensor's byte range lies inside the file (so truncation is caught
    here, with a clear message). Raises `error` (a LoopNeRFError subclass) with a
    message naming the file and saying it is not `what`.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise error(f"{name}: no such file")
    if not path.is_file():
        raise error(f"{name}: not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise error(f"{name}: not {what} (too short for a safetensors header: {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
            hint = "truncated, or not a safetensors file" if n <= MAX_HEADER_BYTES else "not a safetensors file"
            raise error(f"{name}: not {what} ({hint}: header length {n} bytes, file size {size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{name}: not {what} (the safetensors header is not JSON: {err})") from err
    if not isinstance(header, dict):
        raise error(f"{name}: not {what} (the safetensors header is not a JSON object)")
    data_size = size - 8 - n
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise error(f"{name}: not {what} (tensor '{key}' has no valid data_offsets)")
        end = max(end, offsets[1])
    if end > data_size:
        raise error(f"{name}: truncated file (tensor data needs {end} bytes, only {data_size} present)")
    return header
