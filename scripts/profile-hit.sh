#!/usr/bin/env bash
# Counts the instructions one cache hit of GetMemberExpiration costs the service, with callgrind:
# the release service (WORKERS=1, a `strip --strip-debug` copy, so valgrind starts in seconds)
# under `valgrind --tool=callgrind`, the member warmed, WARMUP_REQUESTS hits, counters zeroed
# (`callgrind_control -z`), then REQUESTS hits from h2load, dumped (`callgrind_control -d`).
# Prints instructions per request and the TOP functions by self and by inclusive cost
# (demangled), and keeps the raw profile when PROFILE_OUT names a file. Instruction counts are
# the same for the same work whatever else the machine does, unlike req/s on a shared VM.
#
# Settings (environment): MODE (POST: Connect JSON over h2c; GET: Connect GET; GRPC: binary gRPC;
# H1: Connect JSON over HTTP/1.1), REQUESTS (20000), WARMUP_REQUESTS (2000), CONNECTIONS (8),
# STREAMS (8; under callgrind the loop is ~50x slower, and a deeper queue makes Redis lookups
# time out, turning hits into reads), TOP (15), PROFILE_OUT (unset), SCRATCH_PATH (as for bench.sh), SERVER_CPU (0),
# LOAD_CPU (1), REDIS_CPU (1). Exits non-zero when the build, the stack or a load fails.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
DEBIAN_PACKAGES+=(valgrind)
ensure_packages
cd "$ROOT"

MODE="${MODE:-POST}"
REQUESTS="${REQUESTS:-20000}"
WARMUP_REQUESTS="${WARMUP_REQUESTS:-2000}"
CONNECTIONS="${CONNECTIONS:-8}"
STREAMS="${STREAMS:-8}"
TOP="${TOP:-15}"

die() { echo "profile: $*" >&2; exit 1; }

build_release
begin_run profile
cp "$BIN/points-expiry" "$WORK/points-expiry"
strip --strip-debug "$WORK/points-expiry"
service_command=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$WORK/points-expiry")
start_hit_path_stack 1000
url="http://127.0.0.1:$service_port$HIT_PATH"
write_hit_requests
# The first call reads the member from the fake; every later one is a hit.
curl -sS --http2-prior-knowledge --max-time 60 -X POST -H 'content-type: application/json' --data-binary "@$WORK/request.json" \
  -o /dev/null "$url" || die "the warming call failed"

load() {  # $1: request count
  local target="$url"
  hit_load_args "$MODE" "$1" || die "MODE must be POST, GET, GRPC or H1, not $MODE"
  [ "$MODE" = GET ] && target="$url?$hit_query"
  "${pin_load[@]}" h2load "${load_args[@]}" "$target" > "$WORK/h2load.out" 2>&1 || { cat "$WORK/h2load.out" >&2; die "h2load failed"; }
  grep -q "^status codes: $1 2xx" "$WORK/h2load.out" || { cat "$WORK/h2load.out" >&2; die "not every request got a 2xx"; }
}
# Every profiled request must be a hit: the service's own count of other results must not move.
# Where the service has an in-process tier, it says how many of them the tier answered.
counts() {  # prints "not-hits tier-hits" (tier-hits empty without a tier)
  curl -sS --http2-prior-knowledge --max-time 60 "http://127.0.0.1:$service_port/metrics" |
    awk '/^points_expiry_cache_results_total/ && !/result="hit"/ { n += $2 }
         /^points_expiry_local_cache_hits_total/ { tier += $2; has_tier = 1 }
         END { print n + 0, (has_tier ? tier + 0 : "") }'
}
load "$WARMUP_REQUESTS"
read -r before tier_before < <(counts)
callgrind_control -z "$service_pid" > /dev/null
load "$REQUESTS"
callgrind_control -d "$service_pid" > /dev/null
read -r after tier_after < <(counts)
[ "$before" = "$after" ] || die "$((after - before)) of the profiled requests were not cache hits (Redis too slow under callgrind?)"
served="Redis"
[ -n "$tier_after" ] && served="the in-process tier $((tier_after - tier_before)) times, Redis $((REQUESTS - tier_after + tier_before))"
profile="$(ls -t "$WORK"/callgrind.out* | head -n 1)"
[ -n "${PROFILE_OUT:-}" ] && cp "$profile" "$PROFILE_OUT"

total="$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
[ -n "$total" ] || die "callgrind_annotate found no totals in $profile"
# Function names: Swift's demangled, simplified, and cut to one line of a readable width. The
# frames open across the zeroing (the loop, the thread) claim the whole total even as self cost:
# rows at 99% or more are left out.
table() {
  callgrind_annotate --threshold=100 "$@" "$profile" 2>/dev/null |
    awk -v total="$total" -v top="$TOP" '/file:function/ { getline; table = 1; next }
      table && NF > 1 && shown < top { ir = $1; gsub(",", "", ir); if (ir + 0 < 0.99 * total) { print; shown++ } }' |
    swift demangle --simplified | cut -c1-220
}
echo "GetMemberExpiration hit ($MODE), WORKERS=1, $REQUESTS requests after $WARMUP_REQUESTS (h2load -c $CONNECTIONS -m $STREAMS); answered from $served"
echo "instructions: $total total, $(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }') per request"
echo
echo "top $TOP by self cost (Ir, file:function)"
table --inclusive=no
echo
echo "top $TOP by inclusive cost"
table --inclusive=yes
