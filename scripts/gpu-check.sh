#!/usr/bin/env bash
# The GPU check of a lent device machine, in two halves, so that nothing is built on the device.
#
# Here (the build machine):
#   scripts/gpu-check.sh --prepare
#     builds the release binary and the GPU-marked test binary (tests/gpu.rs) and puts stripped copies
#     in target/gpu/ (a few tens of MB: what the device run carries).
# On the device machine, from the repository root, with target/gpu carried:
#   scripts/gpu-check.sh [OUT_DIR]
#     links the carried binaries against that machine's torch 2.11 (/opt/torch/.venv, or $TORCH_VENV) via
#     LD_LIBRARY_PATH, runs the GPU-marked tests, then `bench/compare.py --suite gpu` (WRN-37-4 and
#     WarpNet1-37-4 with K=2, batch 128, cuda:0, against the same PyTorch step there, fp32), then the same
#     under bf16 mixed precision (`--suite gpu-precision`: against PyTorch's bf16 autocast, NCHW and
#     channels-last, and against warpnet fp32), then `warpnet bench`'s executor table on workers sharing
#     cuda:0 in fp32 and in bf16, then `warpnet plan` from a profile measured on cuda:0 (saved as
#     gpu-profile-<precision>.json), then, where the machine has OpenMPI, `warpnet bench --devices mpi`
#     over 2 and 3 ranks on its GPU, and writes the logs and the tables to OUT_DIR (default: $OUT, else
#     runs/gpu-check). About 8-10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=target/gpu

if [[ "${1:-}" == "--prepare" ]]; then
  cargo build --release
  test_binary=$(cargo test --release --test gpu --no-run 2>&1 | sed -n 's/.*Executable tests\/gpu.rs (\(.*\))/\1/p')
  [[ -x "$test_binary" ]] || { echo "gpu-check.sh: could not find the built tests/gpu.rs binary" >&2; exit 1; }
  mkdir -p "$GPU_DIR"
  strip -o "$GPU_DIR/warpnet" target/release/warpnet
  strip -o "$GPU_DIR/gpu-tests" "$test_binary"
  # With MPI too, for a device machine that has OpenMPI (the last step below runs it only there).
  cargo build --release --features mpi
  strip -o "$GPU_DIR/warpnet-mpi" target/release/warpnet
  du -sh "$GPU_DIR"
  exit 0
fi

out="${1:-${OUT:-runs/gpu-check}}"
mkdir -p "$out"
[[ -x "$GPU_DIR/warpnet" && -x "$GPU_DIR/gpu-tests" && -x "$GPU_DIR/warpnet-mpi" ]] || {
  echo "gpu-check.sh: $GPU_DIR/ missing: run scripts/gpu-check.sh --prepare on the build machine and carry it" >&2
  exit 2
}
venv="${TORCH_VENV:-/opt/torch/.venv}"
python="$venv/bin/python"
[[ -x "$python" ]] || { echo "gpu-check.sh: $python missing (set TORCH_VENV)" >&2; exit 2; }
site=$("$python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
# libtorch itself, then every CUDA library folder of the nvidia-* wheels beside it.
libs="$site/torch/lib"
for dir in "$site"/nvidia/*/lib "$site"/nvidia/*/*/lib; do
  [[ -d "$dir" ]] && libs="$libs:$dir"
done
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export WARPNET_BIN="$PWD/$GPU_DIR/warpnet"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())'
} 2>&1 | tee "$out/machine.txt"

status=0
echo "== GPU-marked tests" | tee "$out/tests.log"
"$GPU_DIR/gpu-tests" --ignored --test-threads 1 2>&1 | tee -a "$out/tests.log" || status=1

echo "== bench/compare.py --suite gpu" | tee "$out/bench.log"
"$python" bench/compare.py --suite gpu --rounds 3 --steps 10 --warmup 3 --out "$out" 2>&1 | tee -a "$out/bench.log" \
  || status=1
echo "== bench/compare.py --suite gpu-precision (bf16)" | tee -a "$out/bench.log"
"$python" bench/compare.py --suite gpu-precision --rounds 3 --steps 10 --warmup 3 --out "$out/bf16" 2>&1 \
  | tee -a "$out/bench.log" || status=1

# The parallel executor's table (issue: terms on devices) on the one GPU: workers share cuda:0 and its
# default stream, so their kernels queue one after another; this measures the executor's overhead there,
# not a multi-GPU speed-up.
for precision in fp32 bf16; do
  echo "== warpnet bench: WRN-37-4 and WarpNet1-37-4 (K=2) on workers sharing cuda:0, batch 128, $precision" \
    | tee -a "$out/bench.log"
  "$WARPNET_BIN" bench --nwarp 6 --width 4 --batch 128 --rounds 3 --steps 5 --warmup 2 --precision "$precision" \
    --out "$out/executor-$precision" \
    --run "wrn cuda:0" --run "wrn cuda:0,cuda:0" --run "warpnet1 k=2 cuda:0" \
    --run "warpnet1 k=2 cuda:0,cuda:0 [F1],[F2,F2'x1]" --run "warpnet1 k=2 cuda:0,cuda:0,cuda:0 [F1],[F2],[F2'x1]" \
    2>&1 | tee -a "$out/bench.log" || status=1
done
# A GPU profile for the step-time model (warpnet plan): WRN-37-4's units at batch 128 and the data-
# parallel shares, saved so that this machine's predictions for NVLink and PCIe can be made from it.
for precision in fp32 bf16; do
  echo "== warpnet plan: WarpNet1-37-4 K=2 from a cuda:0 profile, $precision" | tee -a "$out/bench.log"
  plan=("$WARPNET_BIN" plan --k 2 --nwarp 3 --width 4 --batch 128 --devices 2,3,4 --precision "$precision")
  profile="$out/gpu-profile-$precision.json"
  { "${plan[@]}" --device cuda:0 --link nvlink4 --save-profile "$profile" && "${plan[@]}" --profile "$profile" --link pcie4; } \
    2>&1 | tee -a "$out/bench.log" || status=1
done
# MPI ranks on the GPU (a rank's worker on its local GPU, tensors staged through host memory): two
# data-parallel ranks sharing cuda:0, and the 3-rank placement, where the machine has OpenMPI and the
# MPI build's libraries resolve; otherwise one line says why not.
if command -v mpirun >/dev/null && ! ldd "$GPU_DIR/warpnet-mpi" 2>/dev/null | grep -q "not found"; then
  for ranks in 2 3; do
    echo "== mpirun -np $ranks warpnet bench --devices mpi on the GPU, batch 128, fp32" | tee -a "$out/bench.log"
    mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x LD_LIBRARY_PATH "$GPU_DIR/warpnet-mpi" bench \
      --model "$([[ $ranks == 2 ]] && echo wrn || echo warp)" --k 2 --nwarp 6 --width 4 --batch 128 \
      --devices mpi --rounds 2 --steps 5 --warmup 2 --precision fp32 --out "$out/mpi-$ranks" \
      2>&1 | tee -a "$out/bench.log" || status=1
  done
else
  echo "== MPI on the GPU: skipped (no mpirun here, or the MPI build's libraries do not resolve)" | tee -a "$out/bench.log"
fi
exit $status
