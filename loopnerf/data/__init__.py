"""Captures: posed, timed frames, and the importers that read them from disk."""

from loopnerf.data.capture import Capture, Intrinsics
from loopnerf.errors import CaptureError

__all__ = ["Capture", "Intrinsics", "CaptureError", "load_capture"]


def load_capture(path, **kwargs):
    """Load a capture from `path`, detecting its format; see `loopnerf.data.load`."""
    from loopnerf.data.load import load_capture as _load

    return _load(path, **kwargs)
