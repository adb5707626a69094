#!/usr/bin/env bash
# Benchmarks the campaign export aggregation: builds bench-export in release mode and runs it.
#
# bench-export generates a deterministic 1,000,000-row points-expiration export chunk by chunk
# (64 KiB pieces, never the whole file), feeds it to CampaignAggregator, and reports seconds,
# rows/s and the growth of its peak RSS, next to two references over the same bytes: counting
# line ends (a floor) and CSV.swift parsing a 100,000-row sample. It checks the aggregate against
# what it generated.
#
# Settings (environment): ROWS (1000000; the targets apply from 1,000,000 rows), SCRATCH_PATH
# (passed to swift build as --scratch-path).
# Exits non-zero when the build fails, a figure is wrong, or 1,000,000 rows take 10 s or more or
# grow the peak RSS by 64 MiB or more.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
cd "$ROOT"

ROWS="${ROWS:-1000000}"
scratch=()
[ -n "${SCRATCH_PATH:-}" ] && scratch=(--scratch-path "$SCRATCH_PATH")

swift build -c release "${scratch[@]}" --product bench-export
"$(swift build -c release "${scratch[@]}" --show-bin-path)/bench-export" "$ROWS"
