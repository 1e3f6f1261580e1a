#!/usr/bin/env bash
# Regenerates samples/ from public-domain sources (see samples/README.md). Needs the set-up's
# .venv (for pip) and the ffmpeg CLI. The committed files were made by this script.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/samples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# NASA's astronaut portrait (Eileen Collins, public domain), as shipped by scikit-image.
"$repo/.venv/bin/pip" download -q --no-deps --only-binary=:all: --disable-pip-version-check \
  --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$tmp" scikit-image==0.26.0
unzip -q -o -j "$tmp"/scikit_image-*.whl skimage/data/astronaut.png -d "$tmp"

x264=(-c:v libx264 -preset medium -crf 23 -pix_fmt yuv420p -threads 1 -an -map_metadata -1 -fflags +bitexact)
# A slow 3 s pan across the portrait, 384x288 at 25 fps.
ffmpeg -v error -y -loop 1 -i "$tmp/astronaut.png" -t 3 -r 25 \
  -vf "crop=432:324:'min(80,t*27)':'min(60,t*20)',scale=384:288" "${x264[@]}" "$out/astronaut_pan.mp4"
# The same pan stored sideways with a display matrix saying "rotate 90": players (and dfscan)
# must turn it upright before looking for faces.
ffmpeg -v error -y -i "$out/astronaut_pan.mp4" -vf "transpose=2" "${x264[@]}" "$tmp/sideways.mp4"
ffmpeg -v error -y -display_rotation 90 -i "$tmp/sideways.mp4" -c copy "$out/astronaut_rotated.mp4" 2>/dev/null \
  || ffmpeg -v error -y -i "$tmp/sideways.mp4" -c copy -metadata:s:v:0 rotate=270 "$out/astronaut_rotated.mp4"
# A still image: dfscan scans images as one-frame videos.
ffmpeg -v error -y -i "$tmp/astronaut.png" -vf scale=256:256 -frames:v 1 "$out/astronaut.jpg"
# A fake made by the project's own means: the portrait with its face self-blended (`dfscan
# self-blend`, seed 1: recoloured, re-filtered, shifted and pasted back through a soft face
# mask), panned like astronaut_pan.mp4. Needs the release build (cargo build --release).
"$repo/target/release/dfscan" self-blend "$tmp/astronaut.png" -o "$tmp/astronaut_selfblend.png" --seed 1
ffmpeg -v error -y -loop 1 -i "$tmp/astronaut_selfblend.png" -t 3 -r 25 \
  -vf "crop=432:324:'min(80,t*27)':'min(60,t*20)',scale=384:288" "${x264[@]}" "$out/astronaut_selfblend.mp4"
# No face at all: FFmpeg's test pattern.
ffmpeg -v error -y -f lavfi -i testsrc=duration=2:size=320x240:rate=25 "${x264[@]}" "$out/no_face.mp4"
ls -la "$out"
