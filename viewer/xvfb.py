"""Start a private Xvfb X server (for the window tests and the window benchmark).

Xvfb draws with a software OpenGL, as a headless CI machine does; `apt-get install
xvfb` provides it (scripts/setup.sh installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time


def start_xvfb(screen: str = "1280x1024x24", timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start Xvfb on the first free display number from :97 up.

    Returns (the server process, its display name such as ":97"); the caller sets
    DISPLAY and terminates the process. Raises FileNotFoundError when Xvfb is not
    installed and RuntimeError when it does not come up within `timeout` seconds.
    """
    exe = shutil.which("Xvfb")
    if exe is None:
        raise FileNotFoundError("Xvfb is not installed (apt-get install xvfb)")
    n = next(n for n in range(97, 200)
             if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"))
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", screen, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not os.path.exists(f"/tmp/.X11-unix/X{n}"):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"Xvfb :{n} did not start")
        time.sleep(0.1)
    return proc, f":{n}"
