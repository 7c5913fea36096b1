#!/usr/bin/env bash
# Sets up everything LoopNeRF needs on a fresh Debian/Ubuntu machine with Python 3.11:
# the system libraries open3d and the viewer tests need (installed only when missing),
# a virtual environment in .venv, and the package with the CPU torch wheel pinned.
# Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
ldconfig -p | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p | grep -q 'libEGL.so.1' || missing+=(libegl1)
ldconfig -p | grep -q 'libgomp.so.1' || missing+=(libgomp1)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
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
echo "[setup] ready: $(.venv/bin/python -c 'import torch, taichi; print("torch", torch.__version__, "taichi", taichi.__version__)' 2>/dev/null | tail -1)"
