#!/usr/bin/env bash
# Installs what tune.cpp needs to build and test on Debian 12, from Debian's own packages.
# Idempotent: when every package is already installed it touches nothing (no apt-get at all).
#
#   scripts/install-deps.sh           build + test dependencies
#   scripts/install-deps.sh --bench   also Debian's PyTorch and NumPy, for the CPU benchmark peer
#
# The CUDA toolkit is not a Debian package here: when /usr/local/cuda/bin/nvcc exists, CMake
# builds the CUDA backend; without it the build is CPU-only.
set -euo pipefail

packages=(
  build-essential         # g++ (and GCC's OpenMP runtime, libgomp), make, libc headers
  cmake                   # the build (presets need >= 3.25)
  ninja-build             # the presets' generator
  ccache                  # compiler cache; CMake uses it when it is on PATH
  pkg-config
  git
  python3                 # Debian's, for scripts
  nlohmann-json3-dev      # JSON: config.json, golden.json, safetensors headers
  libopenblas-openmp-dev  # CPU GEMMs; the OpenMP build shares one thread pool with ours
  libpcre2-dev            # tokenizer pre-tokenizer regexes (UTF + UCP + JIT)
  libutf8proc-dev         # Unicode normalization for tokenizers
  libyaml-cpp-dev         # training configs (linked statically)
  libsimdjson-dev         # fast JSON/JSONL reading for datasets
  libcpp-httplib-dev      # tune serve's HTTP server
  fortunes                # English text the quickstart pretrains its tiny model on
  libgtest-dev            # unit tests
  libgmock-dev
  python3-jinja2          # the reference the chat-template tests compare against
  nodejs                  # runs the tokenizer tests' reference (HF's Rust tokenizers, from npm)
)

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --bench) packages+=(python3-torch python3-numpy) ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-deps.sh: unknown option \"$arg\"" >&2; usage >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  # "ii" = wanted install, installed; anything else (absent, removed, half-configured) is missing.
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "install-deps: not root and no sudo; run as root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
echo "+ apt-get update"
"${sudo[@]}" apt-get update
echo "+ apt-get install -y --no-install-recommends ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
