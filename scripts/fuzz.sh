#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ under libFuzzer (cargo fuzz, stable toolchain, no sanitizer)
# for FUZZ_SECONDS each, starting from the corpus kept in fuzz/corpus, then prints one line
# per target: executions, executions per second, coverage, corpus size, crashes.
#
#   scripts/fuzz.sh [TARGET...]       default: every target of fuzz/Cargo.toml
#   FUZZ_SECONDS=600                  time per target
#   FUZZ_MERGE=1                      merge into fuzz/corpus the inputs that reach new coverage
#
# The grown corpus is kept in target/fuzz/corpus/<target> from one run to the next; a crash is
# written to fuzz/artifacts/<target>/ and stops that target (the others still run), and the
# script exits non-zero if any target crashed.
set -euo pipefail

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
TOOLS=$(pwd)/.tools
SECONDS_PER_TARGET=${FUZZ_SECONDS:-600}
WORK=target/fuzz
mkdir -p "$WORK/logs" "$WORK/corpus"

if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz into $TOOLS"
  "$CARGO" install --locked --quiet cargo-fuzz@0.13.2 --root "$TOOLS"
fi
fuzz() { PATH="$TOOLS/bin:$PATH" "$CARGO" fuzz "$@"; }

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(fuzz list --fuzz-dir fuzz)
fi

echo "fuzz: building ${#targets[@]} targets (release, coverage instrumentation, no sanitizer)"
fuzz build -s none --fuzz-dir fuzz --features libfuzzer

status=0
rows=()
for t in "${targets[@]}"; do
  corpus="$WORK/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  log="$WORK/logs/$t.log"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s (log: $log)"
  if fuzz run -s none --fuzz-dir fuzz --features libfuzzer "$t" "$corpus" "fuzz/corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    crashed=no
  else
    crashed=yes
    status=1
  fi
  # libFuzzer's final statistics: stat::number_of_executed_units, stat::average_exec_per_sec.
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  files=$(find "$corpus" -type f | wc -l)
  crash=$(grep -oE "Test unit written to [^ ]+" "$log" | head -1 | awk '{print $5}' || true)
  rows+=("$(printf '%-18s %12s %10s %8s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$files" "${crash:-$crashed}")")
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$crashed" = no ]; then
    fuzz run -s none --fuzz-dir fuzz --features libfuzzer "$t" "fuzz/corpus/$t" "$corpus" -- -merge=1 >>"$log" 2>&1 || true
  fi
done

echo
printf '%-18s %12s %10s %8s %8s  %s\n' target executions exec/s coverage corpus crash
for row in "${rows[@]}"; do echo "$row"; done
exit $status
