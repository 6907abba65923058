#!/usr/bin/env bash
# Build the C++ kernels against libtorch with CMake and run the C++ tests (ctest).
# Usage: scripts/ctest.sh [build-dir]   (uses the python on PATH to find torch)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/cmake}
mkdir -p "$BUILD"
PREFIX=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')
# A CUDA build of torch makes find_package(Torch) look for a CUDA toolkit.
if [ -z "${CUDA_HOME:-}" ]; then
  for c in /usr/local/cuda /usr/local/cuda-*; do
    if [ -x "$c/bin/nvcc" ]; then export CUDA_HOME=$c; break; fi
  done
fi
cmake -S . -B "$BUILD" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release > "$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j "${MAX_JOBS:-2}"
ctest --test-dir "$BUILD" --output-on-failure
