#!/bin/sh
# run_fuzzer.sh FUZZER SEEDS WORKDIR: fuzzes for SBX_FUZZ_SECONDS (default
# 20), starting from the seed corpus SEEDS (read only) and what earlier runs
# found (WORKDIR/corpus, kept between runs in the build directory). A crash,
# a sanitizer report, a violated property or a slow input (over 10 s) fails,
# and its input is left in WORKDIR as crash-*, leak-*, timeout-*, ...
# Replay one: FUZZER WORKDIR/crash-...
set -eu
fuzzer="$1" seeds="$2" work="$3"
seconds="${SBX_FUZZ_SECONDS:-20}"
mkdir -p "$work/corpus"
dict="$seeds.dict"
set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/"
[ -f "$dict" ] && set -- "$@" -dict="$dict"
echo "fuzzing $(basename "$fuzzer") for ${seconds}s from $seeds"
exec "$fuzzer" "$@" "$work/corpus" "$seeds"
