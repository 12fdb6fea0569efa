#!/usr/bin/env bash
# The `gpu` preset on a bare H100/H200, in one command from the repository root (docs/gpu.md):
#
#   bash benchmarks/gpu_check.sh            # the gpu preset: ≈ 3.4 min estimated, never yet run
#   bash benchmarks/gpu_check.sh --smoke    # the same code path at tiny sizes, on a CPU too (seconds)
#
# Needs .carry/cifar10.zip (python -m sdbox.benchmark.gpu_check --pack ../shared/data/cifar10, where
# the data is), python3 with torch, torchvision, timm, safetensors, huggingface_hub, numpy, tqdm and
# Pillow, and nothing from the network: wheels in .carry/wheels/ are installed first when present.
# Writes report.md, results.json, the figures, summary.json and log.txt to $OUT (default
# runs/gpu-check/out); further arguments go to `python -m sdbox.benchmark.gpu_check` (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-check/out}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if compgen -G ".carry/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/gpu-check/site .carry/wheels/*.whl
    export PYTHONPATH="$PWD/runs/gpu-check/site:$PYTHONPATH"
fi

{
    echo "== $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, python3 $(python3 -c 'import sys; print(sys.version.split()[0])')"
    # sdbox is used from this checkout (PYTHONPATH), not installed: only its dependencies must be there.
    python3 - <<'EOF'
import importlib.metadata, importlib.util, sys
needed = {"torch": "torch", "torchvision": "torchvision", "timm": "timm", "safetensors": "safetensors",
          "huggingface_hub": "huggingface_hub", "numpy": "numpy", "tqdm": "tqdm", "PIL": "pillow"}
missing = [dist for module, dist in needed.items() if importlib.util.find_spec(module) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)}. With no network, carry their wheels in .carry/wheels/ "
             "(pip download --no-deps --only-binary=:all: ... -d .carry/wheels NAME==VERSION; docs/gpu.md).")
print("packages: " + ", ".join(f"{d} {importlib.metadata.version(d)}" for d in needed.values()))
if importlib.util.find_spec("matplotlib") is None:
    print("matplotlib is missing: report.md and results.json are written, the figures are not.")
EOF
    echo "== nvidia-smi"
    if command -v nvidia-smi >/dev/null; then nvidia-smi || echo "nvidia-smi failed"; else echo "no nvidia-smi here (no NVIDIA driver)"; fi
} 2>&1 | tee "$LOG"

python3 -u -m sdbox.benchmark.gpu_check --out "$OUT" "$@" 2>&1 | tee -a "$LOG"
