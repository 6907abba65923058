#!/usr/bin/env bash
# One prepared GPU session: build the CUDA extension, run the kernel tests compiled
# (no Triton interpreter; up to 25 failures reported, so one broken kernel does not hide
# the rest), run the benchmarks, and save the results under $OUT (the
# device tool brings that folder back) and bench/results/.
#   bash scripts/gpu_check.sh            # everything (about 10 minutes on an H100/H200)
#   QUICK=1 bash scripts/gpu_check.sh    # kernel tests + training-workload benchmarks only
# (the full run also runs compute-sanitizer's memcheck and racecheck on the CUDA kernels)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT" bench/results
export MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} VMDM_CUDA=1
unset TRITON_INTERPRET
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }

log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" \
  | tee -a "$OUT/gpu_check.log"

log "build (in place)"
python setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
python -c "import vmdm_kernels as vk; print(vk.backends())" | tee -a "$OUT/gpu_check.log"

log "kernel tests, compiled"
python -m pytest tests/kernels -q --maxfail=25 --benchmark-skip -p no:cacheprovider --junitxml="$OUT/kernel_tests.xml" \
  > "$OUT/kernel_tests.log" 2>&1
echo "kernel tests rc=$?" | tee -a "$OUT/gpu_check.log"; tail -5 "$OUT/kernel_tests.log" | tee -a "$OUT/gpu_check.log"

if [ "${QUICK:-0}" != "1" ] && command -v compute-sanitizer > /dev/null; then
  # Out-of-bounds accesses and shared-memory races of the CUDA kernels on awkward shapes.
  for tool in memcheck racecheck; do
    log "compute-sanitizer --tool $tool"
    timeout 180 compute-sanitizer --tool $tool --error-exitcode 9 python -m pytest tests/kernels -q -x \
      --benchmark-skip -p no:cacheprovider -k "cuda and (awkward or empty)" > "$OUT/sanitizer_$tool.log" 2>&1
    echo "$tool rc=$?" | tee -a "$OUT/gpu_check.log"; tail -3 "$OUT/sanitizer_$tool.log" | tee -a "$OUT/gpu_check.log"
  done
fi

name="$(date +%Y-%m-%d)-$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')"
sel=""
if [ "${QUICK:-0}" = "1" ]; then sel="-k train"; fi
log "benchmarks -> bench/results/$name.json"
python -m pytest bench/ --benchmark-only -q -p no:cacheprovider $sel --benchmark-json="bench/results/$name.json" \
  > "$OUT/bench.log" 2>&1
echo "bench rc=$?" | tee -a "$OUT/gpu_check.log"
python -m bench.summarize "bench/results/$name.json" > "bench/results/$name.md" && cat "bench/results/$name.md"
cp "bench/results/$name.json" "bench/results/$name.md" "$OUT/" 2>/dev/null
log "done"
