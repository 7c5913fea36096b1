#!/usr/bin/env bash
# Sets up everything LoopNeRF needs on a fresh Debian/Ubuntu machine with Python 3.11:
# the system libraries open3d and the viewer tests need (installed only when missing),
# a virtual environment in .venv, the package with the CPU torch wheel pinned, and for
# the browser exports and their tests Debian's chromium, Node.js and the npm packages of
# web/package.json (three, playwright-core; `npm ci` into web/node_modules).
# Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
ldconfig -p | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p | grep -q 'libEGL.so.1' || missing+=(libegl1)
ldconfig -p | grep -q 'libgomp.so.1' || missing+=(libgomp1)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] \
  || ls /usr/lib/*/dri/*swrast* >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# constraints.txt pins the CPU torch wheel; a GPU user installs their CUDA torch into
# .venv first and sets LOOPNERF_NO_CONSTRAINTS=1.
if [ -n "${LOOPNERF_NO_CONSTRAINTS:-}" ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
else
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
fi
# three.js for `loopnerf export --format web` and playwright-core for the browser tests,
# pinned by web/package-lock.json; re-installed only when the lock file changed.
if ! cmp -s web/package-lock.json web/node_modules/.loopnerf-lock 2>/dev/null; then
  echo "[setup] npm ci in web/"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp web/package-lock.json web/node_modules/.loopnerf-lock
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, taichi; print("torch", torch.__version__, "taichi", taichi.__version__)' 2>/dev/null | tail -1)"
