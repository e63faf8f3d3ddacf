#!/usr/bin/env bash
# The GPU check of a lent device machine, in two halves, so that nothing is built on the device.
#
# Here (the build machine):
#   scripts/gpu-check.sh --prepare
#     builds the release binary (with and without MPI) and the GPU-marked test binary (tests/gpu.rs) and
#     puts stripped copies in target/gpu/ (a few tens of MB: what the device run carries).
# On the device machine, from the repository root, with target/gpu carried:
#   scripts/gpu-check.sh [OUT_DIR]
#     links the carried binaries against that machine's torch 2.11 (/opt/torch/.venv, or $TORCH_VENV)
#     through LD_LIBRARY_PATH and runs, each step under its own time limit and all of them within one
#     budget of 450 s (a step gets what is left of it, at most its own limit; one with under 5 s left is
#     skipped with a line saying so), so that the whole, the 2 s a step may take to die and the archive
#     included, finishes within 8 minutes on one H100 or H200:
#       - the machine, and what scripts/setup.sh would install there (its --dry-run: the CUDA set);
#       - the GPU-marked tests;
#       - the main job, `warpnet demo`, on cuda:0 (3 epochs: the training path and the table, not the
#         accuracy);
#       - `bench/compare.py --suite gpu` (WRN-37-4 and WarpNet1-37-4 with K=2, batch 128, cuda:0, against
#         the same PyTorch step there, fp32) and `--suite gpu-precision` (bf16 against PyTorch's autocast);
#       - `warpnet bench`'s executor table on workers sharing cuda:0, fp32 and bf16;
#       - WarpNet2 and exact K = 3 (factored: K - 1 tangent passes) against their WRN twin on cuda:0;
#       - `warpnet plan` from a profile measured on cuda:0, fp32 and bf16;
#       - the byte-level GPT on one worker on cuda:0: its sequential model against PyTorch's
#         (bench/lm_vs_pytorch.py, bf16), and warpnet2 K=2 (`warpnet lm bench`);
#       - where the machine has OpenMPI, `warpnet bench --devices mpi` over 2 and 3 ranks on its GPU.
#     Every step's output, its exit status and its seconds go to OUT_DIR/summary.md (default: $OUT, else
#     runs/gpu-check), the one file with every figure; the steps' own files go to
#     OUT_DIR/files.tar.gz.
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
files=runs/gpu-check-files
mkdir -p "$out" "$files"
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
export PYTHONUNBUFFERED=1

summary="$out/summary.md"
echo "# scripts/gpu-check.sh, $(date -u '+%Y-%m-%d %H:%M UTC')" > "$summary"
status=0
BUDGET=450      # s for every step together: 8 minutes less the archive and each step's grace to die
MIN_STEP=5      # s: a step with less than this left of the budget is skipped
# step NAME SECONDS COMMAND...: runs COMMAND under a time limit (SECONDS, or what is left of the
# budget if less), its output into the summary.
step() {
  local name=$1 limit=$2 start=$SECONDS rc=0
  shift 2
  local left=$((BUDGET - SECONDS))
  if (( left < MIN_STEP )); then
    echo "## $name: skipped, ${left} s left of the ${BUDGET} s budget" | tee -a "$summary"
    status=1
    return
  fi
  (( limit > left )) && limit=$left
  echo "== $name"
  { echo; echo "## $name"; echo; echo '```'; } >> "$summary"
  timeout --kill-after=2 "$limit" "$@" > >(tee -a "$summary") 2>&1 || rc=$?
  sleep 0.2  # tee's last lines
  { echo '```'; echo; echo "exit status $rc, $((SECONDS - start)) s (limit $limit s)"; } >> "$summary"
  [[ $rc == 0 ]] || status=1
}

machine() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())'
  scripts/setup.sh --dry-run
}
export python
export -f machine
step "machine" 20 bash -c machine
step "GPU-marked tests (tests/gpu.rs)" 45 "$GPU_DIR/gpu-tests" --ignored --test-threads 1
step "the main job on cuda:0: warpnet demo --epochs 3" 55 \
  "$WARPNET_BIN" demo --epochs 3 --rounds 2 --out "$files/demo"
step "bench/compare.py --suite gpu (fp32)" 60 \
  "$python" bench/compare.py --suite gpu --rounds 2 --steps 8 --warmup 3 --out "$files/compare-fp32"
step "bench/compare.py --suite gpu-precision (bf16)" 60 \
  "$python" bench/compare.py --suite gpu-precision --rounds 2 --steps 8 --warmup 3 --out "$files/compare-bf16"
# The parallel executor's table on the one GPU: workers share cuda:0 and its default stream, so their
# kernels queue one after another; this measures the executor's overhead there, not a multi-GPU speed-up.
for precision in fp32 bf16; do
  step "warpnet bench: WRN-37-4 and WarpNet1-37-4 (K=2) on workers sharing cuda:0, batch 128, $precision" 35 \
    "$WARPNET_BIN" bench --nwarp 6 --width 4 --batch 128 --rounds 2 --steps 5 --warmup 2 --precision "$precision" \
    --out "$files/executor-$precision" \
    --run "wrn cuda:0" --run "wrn cuda:0,cuda:0" --run "warpnet1 k=2 cuda:0" \
    --run "warpnet1 k=2 cuda:0,cuda:0 [F1],[F2,F2'x1]" --run "warpnet1 k=2 cuda:0,cuda:0,cuda:0 [F1],[F2],[F2'x1]"
done
# Factored terms (K - 1 tangent passes): WarpNet2 and exact K = 3 against their WRN twin on cuda:0, bf16.
step "warpnet bench: WRN-37-4 twins of WarpNet2 and exact K = 3 on cuda:0, batch 128, bf16" 30 \
  "$WARPNET_BIN" bench --k 3 --nwarp 2 --width 4 --batch 128 --rounds 2 --steps 5 --warmup 2 --precision bf16 \
  --out "$files/factored" --run "wrn cuda:0" --run "warpnet1 k=3 cuda:0" --run "warpnet2 k=3 cuda:0" --run "exact k=3 cuda:0"
# A GPU profile for the step-time model (warpnet plan): WRN-37-4's units at batch 128 and the data-
# parallel shares, saved so that this machine's predictions for NVLink and PCIe can be made from it.
for precision in fp32 bf16; do
  plan=("$WARPNET_BIN" plan --k 2 --nwarp 3 --width 4 --batch 128 --devices 2,3,4 --precision "$precision")
  profile="$files/gpu-profile-$precision.json"
  # Then WarpNet2 K = 4 (WRN-49-4: the same units) on 3 and 4 devices, past what `auto` enumerates
  # (3^10 and 4^10 assignments of its ten terms): the placements its local search finds.
  searched=("$WARPNET_BIN" plan --k 4 --nwarp 2 --width 4 --batch 128 --devices 3,4 --variant warpnet2
            --precision "$precision" --profile "$profile" --link nvlink4)
  step "warpnet plan: WarpNet1-37-4 K=2 from a cuda:0 profile, and WarpNet2 K=4 placed by auto, $precision" 25 bash -c \
    "$(printf '%q ' "${plan[@]}") --device cuda:0 --link nvlink4 --save-profile $profile && \
     $(printf '%q ' "${plan[@]}") --profile $profile --link pcie4 && $(printf '%q ' "${searched[@]}")"
done
# The language model (GPT-4x128, batch 32 x 128 bytes) on one worker on cuda:0, bf16: its sequential
# block against the same model and step in PyTorch (autocast, flash attention, fused AdamW), and
# warpnet2's restored term.
step "warpnet lm bench: GPT-4x128 sequential against PyTorch, and warpnet2 K=2, on cuda:0, bf16" 40 bash -c \
  "\"\$python\" bench/lm_vs_pytorch.py --device cuda:0 --precisions bf16 --adamw fused --rounds 2 --steps 10 && \
   $(printf '%q' "$WARPNET_BIN") lm bench --variant warpnet2 --devices cuda:0 --precision bf16 --steps 5 --json"
# MPI ranks on the GPU (a rank's worker on its local GPU, tensors staged through host memory): two
# data-parallel ranks sharing cuda:0, and the 3-rank placement, where the machine has OpenMPI and the
# MPI build's libraries resolve; otherwise one line says why not.
if command -v mpirun >/dev/null && ! ldd "$GPU_DIR/warpnet-mpi" 2>/dev/null | grep -q "not found"; then
  for ranks in 2 3; do
    step "mpirun -np $ranks warpnet bench --devices mpi on the GPU, batch 128, fp32" 25 \
      mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x LD_LIBRARY_PATH "$GPU_DIR/warpnet-mpi" bench \
      --model "$([[ $ranks == 2 ]] && echo wrn || echo warp)" --k 2 --nwarp 6 --width 4 --batch 128 \
      --devices mpi --rounds 2 --steps 5 --warmup 2 --precision fp32 --out "$files/mpi-$ranks"
  done
else
  echo "MPI on the GPU: skipped (no mpirun here, or the MPI build's libraries do not resolve)" | tee -a "$summary"
fi
tar -czf "$out/files.tar.gz" "$files"
echo "summary: $summary (exit $status)"
exit $status
