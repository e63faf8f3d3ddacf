#!/usr/bin/env bash
# Installs what warpnet builds against, once, into git-ignored folders of this repository.
#
#   libtorch 2.11 (from PyPI's torch==2.11.0 wheel, the pin of tch 0.24) -> .deps/libtorch-2.11
#                On a machine where `nvidia-smi -L` lists a GPU, or with --cuda, also the CUDA
#                libraries that wheel asks for (cuDNN, cuBLAS, cuSPARSE, NCCL, ...; about 2.6 GB more) into
#                the same folder, where libtorch's own run path finds them: no variable to set, and no
#                rebuild after adding them. --cpu keeps a GPU machine on the CPU set (about 1 GB).
#   A C++ compiler (Debian's g++) where none is found: torch-sys and warpnet's csrc/fused_adamw.cpp
#                are compiled against libtorch's headers by the build; needs root or sudo, and apt-get.
#   OpenMPI (Debian's libopenmpi-dev and openmpi-bin, with libclang-dev for the mpi crate's bindings),
#                for `--features mpi` (`--devices mpi` under mpirun); needs root or sudo, and apt-get.
#                Without it, build without `--features mpi`: everything but MPI ranks works.
#   --test-data: also the full Fashion-MNIST from Debian's dataset-fashion-mnist package, which one test
#                reads from /usr/share/datasets/fashion-mnist (needs root and apt-get).
#   --fortunes:  also Debian's fortunes package (about 2.5 MB of English text in /usr/share/games/fortunes),
#                the default corpus of `warpnet lm` (needs root and apt-get).
#   --pytorch:   also a complete PyTorch 2.11 for Python (with its CUDA wheels, ~4 GB) -> .deps/pytorch-2.11,
#                used only by the side-by-side benchmark in bench/.
#   --dry-run:   prints which libtorch set this machine gets, and why, and installs nothing.
#
# A user who already has libtorch 2.11 exports LIBTORCH=/path/to/libtorch and skips the download; the
# build then links against that one (.cargo/config.toml does not override an exported LIBTORCH).
set -euo pipefail
# The folder above this script's, without external commands (the decision below runs on a bare PATH).
case "$0" in */*) cd "${0%/*}/.." ;; *) cd .. ;; esac

TORCH_VERSION=2.11.0
DEPS=.deps
LIBTORCH_DIR=$DEPS/libtorch-2.11
PYTORCH_DIR=$DEPS/pytorch-2.11
PIP="${PYTHON:-python3} -m pip"
export PIP_ROOT_USER_ACTION=ignore  # pip's warning about root: .deps/ is this repository's, not the system's

want_test_data=0
want_fortunes=0
want_pytorch=0
want_set=""
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --test-data) want_test_data=1 ;;
    --fortunes) want_fortunes=1 ;;
    --pytorch) want_pytorch=1 ;;
    --cuda) want_set=cuda ;;
    --cpu) want_set=cpu ;;
    --dry-run) dry_run=1 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --cuda, --cpu, --test-data, --fortunes, --pytorch or --dry-run)" >&2; exit 2 ;;
  esac
done

# The libtorch set this machine gets: "cuda" where asked or where nvidia-smi lists a GPU, else "cpu";
# prints "<set>: <why>".
torch_set() {
  if [ -n "$want_set" ]; then
    echo "$want_set: asked for with --$want_set"
  elif gpu=$(nvidia-smi -L 2>/dev/null) && [[ "$gpu" == GPU\ [0-9]* ]]; then
    echo "cuda: nvidia-smi lists ${gpu%%$'\n'*}"
  else
    echo "cpu: no GPU listed by nvidia-smi (--cuda installs the CUDA libraries anyway)"
  fi
}
choice=$(torch_set)
if [ "$dry_run" = 1 ]; then
  echo "libtorch set: $choice"
  exit 0
fi

# Whether libtorch's CUDA half finds every library it needs (its run path looks in ../../nvidia/*/lib).
cuda_libraries_complete() {
  ! ldd "$LIBTORCH_DIR/torch/lib/libtorch_cuda.so" 2>/dev/null | grep -q "not found"
}

if [ -n "${LIBTORCH:-}" ]; then
  [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] || { echo "setup.sh: LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so" >&2; exit 2; }
  echo "setup.sh: using LIBTORCH=$LIBTORCH (its CUDA libraries, if any, are yours to provide)"
else
  if [ ! -f "$LIBTORCH_DIR/torch/lib/libtorch_cpu.so" ]; then
    echo "setup.sh: installing libtorch $TORCH_VERSION into $LIBTORCH_DIR (about 1 GB, once)"
    rm -rf "$LIBTORCH_DIR.partial"
    # The wheel is a CUDA 13 build: its CPU libraries still load libcudart.so.13 and libcupti.so.13, so
    # those two small runtime wheels come along. --no-deps keeps cuDNN, cuBLAS, ... (GBs) out: the CPU
    # build never loads them.
    $PIP install --quiet --disable-pip-version-check --no-deps --target "$LIBTORCH_DIR.partial" \
      "torch==$TORCH_VERSION" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cupti==13.0.*"
    mv "$LIBTORCH_DIR.partial" "$LIBTORCH_DIR"
  fi
  if [[ "$choice" == cuda:* ]] && ! cuda_libraries_complete; then
    echo "setup.sh: installing libtorch's CUDA libraries into $LIBTORCH_DIR/nvidia (about 2.6 GB, once; ${choice#cuda: })"
    # The wheel's own CUDA requirements, as its metadata pins them (the CUDA toolkit's libraries, cuDNN,
    # cuSPARSELt, NCCL, NVSHMEM); its Python-only ones (triton, cuda-bindings, sympy, ...) stay out.
    mapfile -t requirements < <(sed -n 's/^Requires-Dist: \(\(cuda-toolkit\|nvidia-\)[^;]*\);.*Linux.*/\1/p' \
      "$LIBTORCH_DIR"/torch-"$TORCH_VERSION".dist-info/METADATA | tr -d ' ')
    partial="$LIBTORCH_DIR.cuda-partial"
    rm -rf "$partial"
    $PIP install --quiet --disable-pip-version-check --target "$partial" "${requirements[@]}"
    # Each nvidia/<part> folder replaces the CPU set's (nvidia/cu13 held the runtime and CUPTI alone).
    for part in "$partial"/nvidia/*/; do
      part=${part%/}
      rm -rf "$LIBTORCH_DIR/nvidia/${part##*/}"
      mv "$part" "$LIBTORCH_DIR/nvidia/"
    done
    rm -rf "$partial"
    cuda_libraries_complete || {
      echo "setup.sh: libtorch's CUDA half still misses libraries:" >&2
      ldd "$LIBTORCH_DIR/torch/lib/libtorch_cuda.so" | grep "not found" >&2
      exit 1
    }
  fi
fi

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_packages=()
if ! command -v c++ >/dev/null; then
  echo "setup.sh: installing Debian's g++ (the build compiles C++ against libtorch's headers)"
  apt_packages+=(g++)
fi
# mpicc (libopenmpi-dev) tells the mpi crate where MPI is; mpirun (openmpi-bin) launches; libclang
# generates the crate's bindings.
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
  echo "setup.sh: installing OpenMPI (Debian's libopenmpi-dev, openmpi-bin, libclang-dev) for --features mpi"
  apt_packages+=(libopenmpi-dev openmpi-bin libclang-dev)
fi
if [ "$want_test_data" = 1 ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  echo "setup.sh: installing Debian's dataset-fashion-mnist (full Fashion-MNIST, for one test)"
  apt_packages+=(dataset-fashion-mnist)
fi
if [ "$want_fortunes" = 1 ] && [ ! -f /usr/share/games/fortunes/fortunes ]; then
  echo "setup.sh: installing Debian's fortunes (the default corpus of warpnet lm)"
  apt_packages+=(fortunes)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null; }; then
    echo "setup.sh: could not apt-get install ${apt_packages[*]}; install them yourself (without OpenMPI, build and test without --features mpi)" >&2
    exit 2
  fi
fi

if [ "$want_pytorch" = 1 ] && [ ! -f "$PYTORCH_DIR/torch/__init__.py" ]; then
  echo "setup.sh: installing PyTorch $TORCH_VERSION for the benchmark into $PYTORCH_DIR (about 4 GB, once)"
  rm -rf "$PYTORCH_DIR.partial"
  $PIP install --quiet --disable-pip-version-check --target "$PYTORCH_DIR.partial" \
    "torch==$TORCH_VERSION" numpy safetensors
  mv "$PYTORCH_DIR.partial" "$PYTORCH_DIR"
fi
