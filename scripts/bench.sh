#!/usr/bin/env bash
# One benchmark run: on a fixed list of clips (../shared/data's 1080p DFDC clips, DeepFaceLive
# halves, the FSGAN inputs, and samples/), times
#   1. ffmpeg decoding every frame (`ffmpeg -i CLIP -f null -`, one process per clip),
#   2. the default scan (`dfscan scan`: default model, OOD ViT, stacker),
#   3. the scan with MesoInception4 alone (`--model models/mesoinception4.safetensors --ood-model none`),
#   4. the Python reference (scripts/bench_reference.py: OpenCV + PyTorch, same weights),
# and prints seconds, ratios, peak RSS (GNU time) and per-stage frames/s (`dfscan bench`).
#
# usage: scripts/bench.sh [DFSCAN_BINARY] [EXTRA SCAN ARGS...]
#   DFSCAN_BINARY  default target/release/dfscan
#   PYTHON         default .venv/bin/python (needs torch, safetensors, cv2; PYTHONPATH may add cv2)
#   BENCH_PAUSE / BENCH_RESUME  commands run before/after each timed step (e.g. pause a
#                  background job for a quiet CPU); a trap runs BENCH_RESUME on any exit.
# Timing is wall-clock; repeat runs on a shared machine and compare within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/dfscan}
shift || true
EXTRA=("$@")
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data}
PAUSE=${BENCH_PAUSE:-true}
RESUME=${BENCH_RESUME:-true}
trap 'eval "$RESUME" >/dev/null 2>&1 || true' EXIT

CLIPS=(
  "$DATA/dfdc_sample5/videos/abofeumbvv.mp4"
  "$DATA/dfdc_sample5/videos/abqwwspghj.mp4"
  "$DATA/deepfacelive_pairs/real/Albica_Johns_0_L.mp4"
  "$DATA/deepfacelive_pairs/fake/Albica_Johns_0_R.mp4"
  "$DATA/deepfacelive_pairs/real/Ava_de_Addario_0_L.mp4"
  "$DATA/deepfacelive_pairs/fake/Ava_de_Addario_0_R.mp4"
  "$DATA/misc_examples/real/fsgan__conan_obrien.mp4"
  "$DATA/misc_examples/real/fsgan__shinzo_abe.mp4"
  samples/astronaut_pan.mp4
  samples/astronaut_rotated.mp4
  samples/astronaut_selfblend.mp4
  samples/no_face.mp4
)
STAGE_CLIP="$DATA/misc_examples/real/fsgan__conan_obrien.mp4"
for c in "${CLIPS[@]}"; do [ -f "$c" ] || { echo "missing clip $c" >&2; exit 1; }; done
TMP=$(mktemp -d)
trap 'eval "$RESUME" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT

# timed NAME CMD...: wall seconds and peak RSS (MB) of CMD, stdout to $TMP/NAME.out.
timed() {
  local name=$1; shift
  eval "$PAUSE" >/dev/null 2>&1 || true
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$TMP/$name.time" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || true
  t1=$(date +%s.%N)
  eval "$RESUME" >/dev/null 2>&1 || true
  local rss
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$TMP/$name.time")
  echo "$name $(echo "$t1 - $t0" | bc -l) $((rss / 1024))" >>"$TMP/results"
}

echo "# dfscan bench: $(date -u +%FT%TZ), $(nproc) cores, binary $BIN ($(sha256sum "$BIN" | cut -c1-12)), ${#CLIPS[@]} clips, scan args: ${EXTRA[*]:-none}"
ffmpeg_all() { for c in "${CLIPS[@]}"; do ffmpeg -v error -nostdin -i "$c" -f null - || return 1; done; }
export -f ffmpeg_all 2>/dev/null || true
timed ffmpeg_decode bash -c "$(declare -p CLIPS); $(declare -f ffmpeg_all); ffmpeg_all"
timed scan_default "$BIN" scan -q --no-state "${EXTRA[@]}" "${CLIPS[@]}"
timed scan_meso "$BIN" scan -q --no-state --model models/mesoinception4.safetensors --ood-model none "${EXTRA[@]}" "${CLIPS[@]}"
timed python_reference "$PYTHON" scripts/bench_reference.py --frames 32 "${CLIPS[@]}"
timed stages "$BIN" bench --model models/mesoinception4.safetensors "$STAGE_CLIP"

base=$(awk '$1=="ffmpeg_decode" {print $2}' "$TMP/results")
py=$(awk '$1=="python_reference" {print $2}' "$TMP/results")
printf '\n| what | seconds | x ffmpeg decode | x Python reference | peak RSS MB |\n| --- | --- | --- | --- | --- |\n'
while read -r name secs rss; do
  [ "$name" = stages ] && continue
  printf '| %s | %.1f | %.2f | %.2f | %s |\n' "$name" "$secs" "$(echo "$secs / $base" | bc -l)" "$(echo "$secs / $py" | bc -l)" "$rss"
done <"$TMP/results"
printf '\nScan lines ok/error: default %s/%s, meso %s/%s; Python reference: %s\n' \
  "$(grep -c '"status":"ok"' "$TMP/scan_default.out" || true)" "$(grep -c '"status":"error"' "$TMP/scan_default.out" || true)" \
  "$(grep -c '"status":"ok"' "$TMP/scan_meso.out" || true)" "$(grep -c '"status":"error"' "$TMP/scan_meso.out" || true)" \
  "$(tail -1 "$TMP/python_reference.out")"
printf '\nPer stage (%s bench on %s, MesoInception4):\n' "$(basename "$BIN")" "$(basename "$STAGE_CLIP")"
cat "$TMP/stages.out" "$TMP/stages.err" | grep -E '^\{' || tail -3 "$TMP/stages.err"
if [ -n "${BENCH_KEEP:-}" ]; then mkdir -p "$BENCH_KEEP" && cp "$TMP"/* "$BENCH_KEEP"/; fi
