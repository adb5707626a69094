#!/usr/bin/env bash
# Benchmarks the campaign export aggregation: builds bench-export in release mode and runs it.
#
# bench-export generates a deterministic 1,000,000-row points-expiration export chunk by chunk
# (64 KiB pieces, never the whole file), feeds it to CampaignAggregator, and reports seconds,
# rows/s and the growth of its peak RSS, next to two references over the same bytes: counting
# line ends (a floor) and CSV.swift parsing a 100,000-row sample. It checks the aggregate against
# what it generated.
#
# Then the same size end to end (skip with END_TO_END=0): the release service (WORKERS=1), a
# redis-server and the fake with ROWS/5 members of 5 buckets each. It times a first
# GetCampaignExpiration until it answers 200 (ask, poll, stream the CSV through the parser, store
# the aggregate in Redis) and the growth of the service's peak RSS (VmHWM) over that export; the
# reference is curl fetching the same export from the fake to /dev/null (ask, poll, download).
#
# Settings (environment): ROWS (1000000; the targets apply from 1,000,000 rows), SCRATCH_PATH
# (passed to swift build as --scratch-path).
# Exits non-zero when the build fails, a figure is wrong, or 1,000,000 rows take 10 s or more or
# grow the peak RSS by 64 MiB or more (in either phase).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
cd "$ROOT"

ROWS="${ROWS:-1000000}"
scratch=()
[ -n "${SCRATCH_PATH:-}" ] && scratch=(--scratch-path "$SCRATCH_PATH")

swift build -c release "${scratch[@]}" --product bench-export
"$(swift build -c release "${scratch[@]}" --show-bin-path)/bench-export" "$ROWS"
[ "${END_TO_END:-1}" = 0 ] && exit 0

echo
echo "== end to end: $ROWS rows through the service"
begin_run bench-export
build_release
SERVER_CPU=0 LOAD_CPU=1 REDIS_CPU=1
fake_arguments=(--members "$((ROWS / 5))" --buckets-per-member 5 --expired-buckets-per-member 0..0 --export-delay-ms 100)
start_hit_path_stack "$((ROWS / 5))"
campaign=camp_fake_loyalty
peak_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
now_ms() { date +%s%3N; }

# Reference: the same export fetched by curl straight from the fake.
fake="http://127.0.0.1:$fake_port"
auth=(-H "X-App-Id: bench-app-id" -H "X-App-Token: bench-app-token")
started=$(now_ms)
export_id=$(curl -sS "${auth[@]}" -H 'content-type: application/json' -d '{}' \
  "$fake/v1/loyalties/$campaign/points-expiration/export" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
url=""
for _ in $(seq 1 600); do
  url=$(curl -sS "${auth[@]}" "$fake/v1/exports/$export_id" \
    | python3 -c 'import json,sys; e=json.load(sys.stdin); print((e.get("result") or {}).get("url","") if e["status"]=="DONE" else "")')
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the fake's export never finished" >&2; exit 1; }
bytes=$(curl -sS "${auth[@]}" -o /dev/null -w '%{size_download}' "$url")
reference_ms=$(( $(now_ms) - started ))

# The service: ask until the first export is stored and answered.
rpc="http://127.0.0.1:$service_port/pointsexpiry.v1.PointsExpiryService/GetCampaignExpiration"
before_kib=$(peak_kib "$service_pid")
started=$(now_ms)
status=""
for _ in $(seq 1 1200); do
  status=$(curl -sS --http2-prior-knowledge -o "$WORK/answer.json" -w '%{http_code}' -H 'content-type: application/json' \
    -d "{\"campaign\":\"$campaign\",\"from\":\"2000-01-01\"}" "$rpc")
  [ "$status" = 200 ] && break
  sleep 0.05
done
service_ms=$(( $(now_ms) - started ))
[ "$status" = 200 ] || { echo "GetCampaignExpiration never answered 200 (last: $status)" >&2; exit 1; }
after_kib=$(peak_kib "$service_pid")
cards=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cards"])' "$WORK/answer.json")
growth_kib=$(( after_kib - before_kib ))

printf 'export: %s rows, %s bytes, %s cards\n' "$ROWS" "$bytes" "$cards"
awk -v reference="$reference_ms" -v service="$service_ms" -v growth="$growth_kib" -v before="$before_kib" -v after="$after_kib" 'BEGIN {
  printf "service peak RSS growth: %.1f MiB (VmHWM %d -> %d KiB)\n", growth / 1024, before, after
  printf "reference (curl: ask, poll, download to /dev/null): %.2f s\n", reference / 1000
  printf "service (ask, poll, stream-parse, aggregate, store, answer): %.2f s\n", service / 1000
  printf "ratio service / reference: %.2f\n", service / reference
}'
if [ "$ROWS" -ge 1000000 ] && { [ "$service_ms" -ge 10000 ] || [ "$growth_kib" -ge $((64 * 1024)) ]; }; then
  echo "FAIL: targets are < 10 s and < 64 MiB of peak RSS growth" >&2
  exit 1
fi
