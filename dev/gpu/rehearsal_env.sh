#!/usr/bin/env bash
# Creates the rehearsal environment for the GPU check kit: a Python 3.12 venv, outside the repository,
# holding what the GPU machine has (torch 2.11.0 / torchvision 0.26.0 and the usual scientific stack)
# and none of what the kit brings (detectron2, fvcore, iopath, omegaconf, hydra-core, pycocotools, ...).
# `source dev/gpu/install.sh` with this venv's python as PYTHON then shows, on CPU, whether the kit
# alone makes the project importable and testable.
#
#   bash dev/gpu/rehearsal_env.sh          (or `make gpu-rehearsal-env`)
#
# REHEARSAL_VENV (default /work/gpu-rehearsal/venv) and REHEARSAL_PYTHON (default pyenv's 3.12.1) are
# overridable. Idempotent: an existing venv is completed, not rebuilt; a stamp file marks it done.
set -euo pipefail

REHEARSAL_VENV="${REHEARSAL_VENV:-/work/gpu-rehearsal/venv}"
REHEARSAL_PYTHON="${REHEARSAL_PYTHON:-$HOME/.pyenv/versions/3.12.1/bin/python3}"
# The GPU machine's versions. torch comes from the registry's Linux build (CUDA libraries included);
# it runs on CPU here.
TORCH_SPEC="torch==2.11.0 torchvision==0.26.0"
OTHERS="numpy scipy opencv-python-headless matplotlib pillow tabulate pyyaml cloudpickle portalocker
pytest tqdm tensorboard packaging requests"
STAMP="$REHEARSAL_VENV/.gpu-rehearsal-ready"

say() { printf '[rehearsal-env] %s\n' "$*"; }
die() { printf '[rehearsal-env] ERROR: %s\n' "$*" >&2; exit 1; }

if [ -f "$STAMP" ]; then
    say "$REHEARSAL_VENV is ready ($(cat "$STAMP"))"
    exit 0
fi
[ -x "$REHEARSAL_PYTHON" ] || command -v "$REHEARSAL_PYTHON" >/dev/null 2>&1 \
    || die "Python '$REHEARSAL_PYTHON' not found (set REHEARSAL_PYTHON=...)"
"$REHEARSAL_PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' \
    || die "$REHEARSAL_PYTHON is not Python 3.12 (the GPU machine's version)"

if [ ! -x "$REHEARSAL_VENV/bin/python" ]; then
    say "creating $REHEARSAL_VENV with $("$REHEARSAL_PYTHON" -V)"
    mkdir -p "$(dirname "$REHEARSAL_VENV")"
    "$REHEARSAL_PYTHON" -m venv "$REHEARSAL_VENV"
fi
VPY="$REHEARSAL_VENV/bin/python"
say "installing $TORCH_SPEC and the GPU machine's other packages (several GiB: torch brings CUDA)"
# shellcheck disable=SC2086
"$VPY" -m pip --disable-pip-version-check install -q $TORCH_SPEC $OTHERS

# The kit must bring these itself: the rehearsal proves nothing if the venv already has one.
"$VPY" - <<'PYEOF'
import importlib.util, sys
kit = ["detectron2", "fvcore", "iopath", "omegaconf", "hydra", "antlr4", "pycocotools", "yacs",
       "termcolor"]
present = [m for m in kit if importlib.util.find_spec(m) is not None]
if present:
    sys.exit(f"[rehearsal-env] ERROR: the venv already has {present}; the kit must bring them")
PYEOF
"$VPY" -c 'import torch, torchvision; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")' \
    | tee "$STAMP"
say "ready: $REHEARSAL_VENV"
