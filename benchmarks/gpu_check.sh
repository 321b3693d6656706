#!/usr/bin/env bash
# One call's work on a lent GPU (GPU-BACKLOG item 1), everything under $OUT:
#   device.txt     GPU name, driver, torch/triton versions, date
#   pytest-gpu.txt the tests that need CUDA (Triton kernels on the GPU, GPU training, ORT CUDA / torch-triton
#                  runtimes in the verifier) plus the Triton kernel tests on the device
#   bench-gpu.txt/.json  linfdist bench at the paper shapes (p = inf and 8, fwd/bwd/bounds/step) against
#                  torch.cdist in the same run
#   native-cpu.txt, bench-cpu.json  the native CPU kernels on the host's CPU (AVX-512 where it has it)
# Usage through the device tool, from the repository root: bash benchmarks/gpu_check.sh [pytest-seconds]
# The image holds every dependency (KINDS.md): the package installs from the tree without an index.
set -u
OUT=${OUT:-/tmp/linfdist-gpu}
mkdir -p "$OUT"
PY=python3
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUT/install.log" 2>&1 \
  || { echo "pip install -e . failed: see install.log"; tail -20 "$OUT/install.log"; exit 1; }
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, triton, onnxruntime as o; print('torch', torch.__version__, 'triton', triton.__version__, 'ort', o.__version__, o.get_available_providers())"
  $PY -c "import linfdist, linfdist.kernels.triton_ops as t; print('linfdist', linfdist.__version__, 'from', linfdist.__file__)"
} 2>&1 | tee "$OUT/device.txt"
{
  timeout "${1:-240}" $PY -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py  # all of it, on the GPU
  timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_verify_cli.py -k "cuda or gpu"
} 2>&1 | tail -60 > "$OUT/pytest-gpu.txt"
tail -5 "$OUT/pytest-gpu.txt"
timeout 240 $PY -m linfdist bench --device cuda --shapes paper --p inf,8 --json "$OUT/bench-gpu.json" 2>&1 \
  | tee "$OUT/bench-gpu.txt" | tail -30
# The device host's own CPU (issue 9): the native kernels' tests on every instruction set it runs (AVX-512
# where it has it, which this project's 2-core development machine lacks) and the CPU benchmark on 2 threads,
# comparable with the README's table.
{
  grep -m1 "model name" /proc/cpuinfo; nproc
  $PY -c "from linfdist.kernels import native as n; print('native', n.available(), n.supported_isas(), n.reason())"
  timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_native_kernels.py 2>&1 | tail -5
  timeout 150 $PY -m linfdist bench --device cpu --shapes small --backends native,torch,cdist --p inf,8 \
    --threads 2 --repeat 3 --json "$OUT/bench-cpu.json" 2>&1
} > "$OUT/native-cpu.txt" 2>&1
tail -25 "$OUT/native-cpu.txt"
