"""The user-facing error types.

Every error a user can cause (bad input files, impossible options, no still segment
found) derives from `LoopNeRFError`; the CLI prints its message and exits with code 2
instead of showing a traceback. Programming errors stay ordinary exceptions.
"""


class LoopNeRFError(Exception):
    """Base of every error caused by the user's input; its message says what to fix."""


class CaptureError(LoopNeRFError):
    """A capture (images, poses, intrinsics, times) could not be read or is invalid.

    The message names the file and the field at fault.
    """


class ConfigError(LoopNeRFError):
    """Options that cannot work together, or a run directory missing a stage's output."""


class TrainingError(LoopNeRFError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


class SelectionError(LoopNeRFError):
    """No still segment was found; the message names the threshold change that would find one."""
