#!/usr/bin/env bash
# One call's work on a lent device machine, sized for a 15-minute lease (each step has its own time limit,
# about 8.5 minutes in all). Everything lands under $OUT as it is produced:
#   device.txt       GPU and host CPU, driver, torch/triton/ort versions, date
#   native.txt       the native CPU kernels' tests on every instruction set the host runs (AVX-512 where it
#                    has it, which the project's 2-core development machine lacks) and the CPU bench on
#                    2 threads, comparable with the README's table (issue 9); bench-cpu.json
#   pytest-gpu.txt   the Triton kernel tests on the GPU (8 workers: one at a time took over 150 s, mostly compiling) and the other CUDA tests (GPU training that resumes
#                    on the CPU, the verifier's torch-triton / ORT CUDA runtimes)
#   bench-gpu.txt/.json   linfdist bench at the paper shapes (p = inf and 8, fwd/bwd/bounds) against
#                    torch.cdist in the same run (the pure-torch rows took seconds each and ran past the limit), then one Adam step of the 5x5120 MNIST net and of the
#                    6-layer CIFAR-10 nets (width 512 as trained on the CPU, 5120 as in the papers)
# Usage through the device tool, from the repository root:
#   bash benchmarks/gpu_check.sh
# MNIST (for the GPU training test) travels in the git-ignored .gpu-data/mnist when the call carries it.
set -u
OUT=${OUT:-/tmp/linfdist-gpu}
mkdir -p "$OUT"
PY=python3
export PYTHONUNBUFFERED=1
if [ -d .gpu-data/mnist ] && [ ! -e ../shared/data/mnist ]; then
  mkdir -p ../shared/data && cp -r .gpu-data/mnist ../shared/data/
fi
timeout 90 $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUT/install.log" 2>&1 \
  || { echo "pip install -e . failed: see install.log"; tail -20 "$OUT/install.log"; exit 1; }
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  grep -m1 "model name" /proc/cpuinfo; echo "cpus $(nproc)"; grep -o -m1 'avx512[a-z]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  $PY -c "import torch, triton, onnxruntime as o; print('torch', torch.__version__, 'triton', triton.__version__, 'ort', o.__version__, o.get_available_providers())"
  $PY -m linfdist --version
  $PY -c "from linfdist.kernels import native as n; print('native', n.available(), n.supported_isas(), n.reason())"
} 2>&1 | tee "$OUT/device.txt"

echo "== native CPU kernels (issue 9)"
{
  timeout 100 $PY -m pytest -q -p no:cacheprovider -n 4 tests/test_native_kernels.py 2>&1 | tail -15
  timeout 60 $PY -m linfdist bench --device cpu --shapes small --backends native,torch,cdist --p inf,8,7.5 \
    --passes fwd --threads 2 --repeat 3 --json "$OUT/bench-cpu.json" 2>&1
  timeout 40 $PY -m linfdist bench --device cpu --shapes small --backends native,torch,cdist --p inf \
    --passes bwd,bounds --threads 2 --repeat 3 2>&1
  timeout 20 $PY -m linfdist bench --device cpu --shapes small --backends native --p inf --passes fwd \
    --threads "$(nproc)" --repeat 3 2>&1
} 2>&1 | tee "$OUT/native.txt"

echo "== GPU tests"
{
  timeout 150 $PY -m pytest -q -p no:cacheprovider -n 8 --timeout 60 tests/test_triton_kernels.py 2>&1 | tail -40
  timeout 60 $PY -m pytest -q -p no:cacheprovider --timeout 50 tests/test_train.py tests/test_verify_cli.py \
    -k "cuda or gpu" 2>&1 | tail -15
} 2>&1 | tee "$OUT/pytest-gpu.txt" | tail -20

echo "== GPU bench"
{
  timeout 100 $PY -m linfdist bench --device cuda --shapes paper --p inf,8 --passes fwd,bwd,bounds --repeat 3 \
    --backends triton,cdist --json "$OUT/bench-gpu.json" 2>&1
  for net in "mnist 5120" "cifar10 512" "cifar10 5120"; do
    set -- $net
    timeout 25 $PY -m linfdist bench --device cuda --passes step --net "$1" --width "$2" --batch 512 --p inf,8 \
      --backends triton --repeat 3 2>&1 | tail -n +2
  done
} 2>&1 | tee "$OUT/bench-gpu.txt"
