#!/usr/bin/env bash
# Installs what warpnet builds against, once, into git-ignored folders of this repository.
#
#   libtorch 2.11 (from PyPI's torch==2.11.0 wheel, the pin of tch 0.24) -> .deps/libtorch-2.11
#   OpenMPI (Debian's libopenmpi-dev and openmpi-bin, with libclang-dev for the mpi crate's bindings),
#                for `--features mpi` (`--devices mpi` under mpirun); needs root or sudo, and apt-get.
#                Without it, build without `--features mpi`: everything but MPI ranks works.
#   --test-data: also the full Fashion-MNIST from Debian's dataset-fashion-mnist package, which one test
#                reads from /usr/share/datasets/fashion-mnist (needs root and apt-get).
#   --pytorch:   also a complete PyTorch 2.11 for Python (with its CUDA wheels, ~4 GB) -> .deps/pytorch-2.11,
#                used only by the side-by-side benchmark in bench/.
#
# A user who already has libtorch 2.11 exports LIBTORCH=/path/to/libtorch and skips the download; the
# build then links against that one (.cargo/config.toml does not override an exported LIBTORCH).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
DEPS=.deps
LIBTORCH_DIR=$DEPS/libtorch-2.11
PYTORCH_DIR=$DEPS/pytorch-2.11
PIP="${PYTHON:-python3} -m pip"

want_test_data=0
want_pytorch=0
for arg in "$@"; do
  case "$arg" in
    --test-data) want_test_data=1 ;;
    --pytorch) want_pytorch=1 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --test-data or --pytorch)" >&2; exit 2 ;;
  esac
done

if [ -n "${LIBTORCH:-}" ]; then
  [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] || { echo "setup.sh: LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so" >&2; exit 2; }
  echo "setup.sh: using LIBTORCH=$LIBTORCH"
elif [ ! -f "$LIBTORCH_DIR/torch/lib/libtorch_cpu.so" ]; then
  echo "setup.sh: installing libtorch $TORCH_VERSION into $LIBTORCH_DIR (about 1 GB, once)"
  rm -rf "$LIBTORCH_DIR.partial"
  # The wheel is a CUDA 13 build: its CPU libraries still load libcudart.so.13 and libcupti.so.13, so those
  # two small runtime wheels come along. --no-deps keeps cuDNN, cuBLAS, ... (GBs) out: the CPU build
  # never loads them.
  $PIP install --quiet --disable-pip-version-check --no-deps --target "$LIBTORCH_DIR.partial" \
    "torch==$TORCH_VERSION" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cupti==13.0.*"
  mv "$LIBTORCH_DIR.partial" "$LIBTORCH_DIR"
fi

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_packages=()
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
if [ "${#apt_packages[@]}" -gt 0 ]; then
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null; }; then
    echo "setup.sh: could not apt-get install ${apt_packages[*]}; without OpenMPI, build and test without --features mpi" >&2
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
