#!/usr/bin/env bash
# One benchmark run: on a fixed list of clips (../shared/data's 1080p DFDC clips, DeepFaceLive
# halves, the FSGAN inputs, and samples/), times
#   1. ffmpeg decoding every frame (`ffmpeg -i CLIP -f null -`, one process per clip),
#   2. the default scan (`dfscan scan`: default model, OOD ViT, stacker),
#   3. the scan with MesoInception4 alone (`--model models/mesoinception4.safetensors --ood-model none`),
#   4. the Python reference (scripts/bench_reference.py: OpenCV + PyTorch, same weights),
# and prints seconds, ratios, peak RSS (GNU time) and per-stage frames/s (`dfscan bench`).
#
# usage: scripts/bench.sh [DFSCAN_BINARY[@ARGS]...]
#   DFSCAN_BINARY  default target/release/dfscan; with several (e.g. before and after a change)
#                  each step runs them in turn, so a busy machine slows them alike
#   @ARGS          arguments added to that binary's scans and stage bench only, e.g.
#                  "target/release/dfscan@--detector yunet320" beside target/release/dfscan
#   SCAN_ARGS      extra arguments for every scan (e.g. "--decode-threads 1")
#   PYTHON         default .venv/bin/python (needs torch, safetensors, cv2; PYTHONPATH may add cv2)
#   BENCH_PAUSE / BENCH_RESUME  commands run before/after each timed step (e.g. pause a
#                  background job for a quiet CPU); a trap runs BENCH_RESUME on any exit.
# Timing is wall-clock; repeat runs on a shared machine and compare within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
SPECS=("$@")
[ ${#SPECS[@]} -gt 0 ] || SPECS=(target/release/dfscan)
BINS=(); BARGS=()
for spec in "${SPECS[@]}"; do
  BINS+=("${spec%%@*}")
  if [[ $spec == *@* ]]; then BARGS+=("${spec#*@}"); else BARGS+=(""); fi
done
read -r -a EXTRA <<<"${SCAN_ARGS:-}"
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
  local rss cpu
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$TMP/$name.time")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$TMP/$name.time")
  echo "$name $(echo "$t1 - $t0" | bc -l) $((rss / 1024)) $cpu" >>"$TMP/results"
}

echo "# dfscan bench: $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ${#CLIPS[@]} clips, scan args: ${EXTRA[*]:-none}"
for i in "${!BINS[@]}"; do echo "# binary $i: ${BINS[$i]} (sha256 $(sha256sum "${BINS[$i]}" | cut -c1-12))${BARGS[$i]:+, args: ${BARGS[$i]}}"; done
ffmpeg_all() { for c in "${CLIPS[@]}"; do ffmpeg -v error -nostdin -i "$c" -f null - || return 1; done; }
timed ffmpeg_decode bash -c "$(declare -p CLIPS); $(declare -f ffmpeg_all); ffmpeg_all"
for i in "${!BINS[@]}"; do read -r -a OWN <<<"${BARGS[$i]}"; timed "scan_default.$i" "${BINS[$i]}" scan -q --no-state "${EXTRA[@]}" "${OWN[@]}" "${CLIPS[@]}"; done
timed python_reference "$PYTHON" scripts/bench_reference.py --frames 32 "${CLIPS[@]}"
for i in "${!BINS[@]}"; do
  read -r -a OWN <<<"${BARGS[$i]}"
  timed "scan_meso.$i" "${BINS[$i]}" scan -q --no-state --model models/mesoinception4.safetensors --ood-model none "${EXTRA[@]}" "${OWN[@]}" "${CLIPS[@]}"
done
for i in "${!BINS[@]}"; do read -r -a OWN <<<"${BARGS[$i]}"; timed "stages.$i" "${BINS[$i]}" bench --model models/mesoinception4.safetensors "${OWN[@]}" "$STAGE_CLIP"; done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

base=$(awk '$1=="ffmpeg_decode" {print $2}' "$TMP/results")
py=$(awk '$1=="python_reference" {print $2}' "$TMP/results")
printf '\n| what (.N = binary N) | seconds | x ffmpeg decode | x Python reference | CPU seconds (user+sys) | peak RSS MB |\n| --- | --- | --- | --- | --- | --- |\n'
while read -r name secs rss cpu; do
  case $name in stages*) continue ;; esac
  printf '| %s | %.1f | %.2f | %.2f | %.1f | %s |\n' "$name" "$secs" "$(echo "$secs / $base" | bc -l)" "$(echo "$secs / $py" | bc -l)" "$cpu" "$rss"
done <"$TMP/results"
for i in "${!BINS[@]}"; do
  printf '\nbinary %s scan lines ok/error: default %s/%s, meso %s/%s\n' "$i" \
    "$(grep -c '"status":"ok"' "$TMP/scan_default.$i.out" || true)" "$(grep -c '"status":"error"' "$TMP/scan_default.$i.out" || true)" \
    "$(grep -c '"status":"ok"' "$TMP/scan_meso.$i.out" || true)" "$(grep -c '"status":"error"' "$TMP/scan_meso.$i.out" || true)"
done
printf 'Python reference: %s\n' "$(tail -1 "$TMP/python_reference.out")"
for i in "${!BINS[@]}"; do
  printf '\nPer stage, binary %s (`dfscan bench` on %s, MesoInception4; every frame decoded and kept):\n' "$i" "$(basename "$STAGE_CLIP")"
  cat "$TMP/stages.$i.out" "$TMP/stages.$i.err" | grep -E '^\{' || tail -3 "$TMP/stages.$i.err"
done
if [ -n "${BENCH_KEEP:-}" ]; then mkdir -p "$BENCH_KEEP" && cp "$TMP"/* "$BENCH_KEEP"/; fi
