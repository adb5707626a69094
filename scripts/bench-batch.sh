#!/usr/bin/env bash
# What a 100-member BatchGetMemberExpirations costs against 100 GetMemberExpiration calls, every
# member a cache hit, measured in the same run against the same service (WORKERS=1, pinned).
#
# Both loads ask for the same number of member answers with h2load (POST, Connect JSON):
#   singles  BATCHES × 100 GetMemberExpiration calls for one cached member;
#   batch    BATCHES BatchGetMemberExpirations calls of 100 distinct cached members each.
# It prints member answers per second and the service's CPU time per member answer (from
# /proc/PID/stat), and the ratios batch/singles. Loads alternate for ROUNDS rounds; each mode is
# reported at its median round.
#
# Settings (environment): ROUNDS (3), BATCHES (2000), CONNECTIONS (8), STREAMS (8), LOAD_TIMEOUT (120),
# SERVER_CPU (0), LOAD_CPU (1), SCRATCH_PATH (passed to swift build as --scratch-path).
# Exits non-zero when a build, a server or a load run fails, a request did not get a 2xx, or a
# member answer during the loads was anything but a cache hit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
ensure_packages
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
BATCHES="${BATCHES:-2000}"
CONNECTIONS="${CONNECTIONS:-8}"
STREAMS="${STREAMS:-8}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-120}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
SERVICE_PATH="/pointsexpiry.v1.PointsExpiryService"
CAMPAIGN="camp_fake_loyalty"

die() { echo "bench-batch: $*" >&2; exit 1; }

scratch=()
[ -n "${SCRATCH_PATH:-}" ] && scratch=(--scratch-path "$SCRATCH_PATH")
swift build -c release "${scratch[@]}" --product points-expiry
swift build -c release "${scratch[@]}" --product fake-voucherify
BIN="$(swift build -c release "${scratch[@]}" --show-bin-path)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/points-expiry-bench-batch.XXXXXX")"
children=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  finish_run bench-batch "$status" "${children[@]}"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pin_server=(taskset -c "$SERVER_CPU")
pin_load=(taskset -c "$LOAD_CPU")
if [ "$(nproc)" -lt 2 ]; then
  echo "bench-batch: only one CPU, running unpinned" >&2
  pin_server=() pin_load=()
fi

redis_port="$(free_port)"
"${pin_load[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$WORK" --logfile "$WORK/redis.log" &
children+=($!)
wait_for_port "$redis_port"

fake_port="$(free_port)"
"$BIN/fake-voucherify" --host 127.0.0.1 --port "$fake_port" --members 100 --campaign-id "$CAMPAIGN" \
  --app-id bench-app-id --app-token bench-app-token --rate-limit 1000000 > "$WORK/fake-voucherify.log" 2>&1 &
children+=($!)
wait_for_port "$fake_port"

service_port="$(free_port)"
env LISTEN="127.0.0.1:$service_port" WORKERS=1 LOG_LEVEL=warning CACHE_TTL_SECONDS=3600 \
  REDIS_URL="redis://127.0.0.1:$redis_port" VOUCHERIFY_API_URL="http://127.0.0.1:$fake_port" \
  VOUCHERIFY_APP_ID=bench-app-id VOUCHERIFY_APP_TOKEN=bench-app-token \
  "${pin_server[@]}" "$BIN/points-expiry" serve > "$WORK/points-expiry.log" 2>&1 &
service_pid=$!
children+=($service_pid)
wait_for_port "$service_port"
base="http://127.0.0.1:$service_port$SERVICE_PATH"

# --- requests and a warm cache ----------------------------------------------------------------
members="$(seq -f '"MEMBER-%06g"' 1 100 | paste -sd, -)"
printf '{"campaign":"%s","members":[%s]}' "$CAMPAIGN" "$members" > "$WORK/batch.json"
printf '{"campaign":"%s","member":"MEMBER-000001"}' "$CAMPAIGN" > "$WORK/single.json"
call() {  # $1: method, $2: body file; prints the body, fails unless 200
  curl -sS --http2-prior-knowledge --max-time 30 -X POST -H 'content-type: application/json' \
    --data-binary "@$2" --fail-with-body "$base/$1"
}
call BatchGetMemberExpirations "$WORK/batch.json" > /dev/null || die "the warming batch failed"
# Each miss stores its answer just before it is answered: wait until a batch is all hits.
for _ in $(seq 1 100); do
  call BatchGetMemberExpirations "$WORK/batch.json" > "$WORK/batch.body"
  [ "$(grep -o '"cache":"hit"' "$WORK/batch.body" | wc -l)" -eq 100 ] && break
  sleep 0.1
done
[ "$(grep -o '"cache":"hit"' "$WORK/batch.body" | wc -l)" -eq 100 ] || die "the batch is not all cache hits after warming"
echo "bench-batch: cache warm; a 100-member batch answer is $(wc -c < "$WORK/batch.body") bytes" >&2

misses() {
  curl -sS --http2-prior-knowledge --max-time 10 "http://127.0.0.1:$service_port/metrics" |
    awk '$1 == "points_expiry_cache_results_total{result=\"miss\"}" { print $2 }'
}
# CPU seconds the service has used (user + system), from /proc/PID/stat.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$service_pid/stat"; }

# run_load NAME METHOD BODY COUNT: one h2load run; writes NAME's req/s and CPU seconds.
run_load() {
  local name="$1" method="$2" body="$3" count="$4" out="$WORK/h2load-$1.out" rc=0 cpu_before
  cpu_before="$(cpu_seconds)"
  timeout --kill-after=5 "$LOAD_TIMEOUT" "${pin_load[@]}" h2load -n "$count" -c "$CONNECTIONS" -m "$STREAMS" -t 1 \
    -d "$body" -H 'content-type: application/json' "$base/$method" > "$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$out" >&2; die "h2load ($name) exited with $rc"; }
  awk -v n="$count" '/^status codes:/ { ok = ($3 == n) } END { exit !ok }' "$out" || { cat "$out" >&2; die "h2load ($name): not all $count got 2xx"; }
  awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) print $i }' "$out" > "$WORK/$name.rps"
  awk -v a="$cpu_before" -v b="$(cpu_seconds)" 'BEGIN { printf "%.3f\n", b - a }' > "$WORK/$name.cpu"
}

misses_before="$(misses)"
run_load singles-warmup GetMemberExpiration "$WORK/single.json" $((BATCHES * 10))
run_load batch-warmup BatchGetMemberExpirations "$WORK/batch.json" $((BATCHES / 10))
for round in $(seq 1 "$ROUNDS"); do
  run_load "singles-$round" GetMemberExpiration "$WORK/single.json" $((BATCHES * 100))
  run_load "batch-$round" BatchGetMemberExpirations "$WORK/batch.json" "$BATCHES"
  echo "bench-batch: round $round: singles $(cat "$WORK/singles-$round.rps") req/s, batches $(cat "$WORK/batch-$round.rps") req/s" >&2
done
[ "$misses_before" = "$(misses)" ] || die "cache misses during the loads ($misses_before -> $(misses)): not a hit-path run"

median_round() {  # NAME: the round whose req/s is the median
  for round in $(seq 1 "$ROUNDS"); do echo "$(cat "$WORK/$1-$round.rps") $round"; done |
    sort -g | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }'
}
singles_round="$(median_round singles)"
batch_round="$(median_round batch)"
answers=$((BATCHES * 100))
singles_rate="$(awk -v r="$(cat "$WORK/singles-$singles_round.rps")" 'BEGIN { printf "%.0f", r }')"
batch_rate="$(awk -v r="$(cat "$WORK/batch-$batch_round.rps")" 'BEGIN { printf "%.0f", r * 100 }')"
singles_cpu="$(awk -v c="$(cat "$WORK/singles-$singles_round.cpu")" -v n="$answers" 'BEGIN { printf "%.2f", c * 1e6 / n }')"
batch_cpu="$(awk -v c="$(cat "$WORK/batch-$batch_round.cpu")" -v n="$answers" 'BEGIN { printf "%.2f", c * 1e6 / n }')"

echo
echo "BatchGetMemberExpirations (100 members) vs 100 GetMemberExpiration calls, all cache hits"
echo "h2load -c $CONNECTIONS -m $STREAMS -t 1, $answers member answers per run, median of $ROUNDS alternating rounds;" \
     "service WORKERS=1 on CPU $SERVER_CPU, h2load and redis on CPU $LOAD_CPU"
printf '%-34s %16s %22s\n' mode 'answers/s' 'service CPU µs/answer'
printf '%-34s %16s %22s\n' '100 × GetMemberExpiration' "$singles_rate" "$singles_cpu"
printf '%-34s %16s %22s\n' 'BatchGetMemberExpirations × 1' "$batch_rate" "$batch_cpu"
echo "throughput ratio batch/singles: $(awk -v a="$batch_rate" -v b="$singles_rate" 'BEGIN { printf "%.2f", a / b }')," \
     "CPU per answer singles/batch: $(awk -v a="$singles_cpu" -v b="$batch_cpu" 'BEGIN { printf "%.2f", a / b }')"
