#!/usr/bin/env bash
# Benchmarks the cache-hit path of GetMemberExpiration against a reference HTTP/2 server, over
# h2c with Connect JSON (the ratio), and also over gRPC (binary) and HTTP/1.1 keep-alive.
#
# The reference is nghttpd (single-threaded, from nghttp2-server) serving the very same response
# body as a static file at the very same path, so both servers answer the same h2load request over
# h2c (prior knowledge) with the same bytes. The service runs with WORKERS=1 so both sides get one
# event-loop thread; each server in turn is pinned to CPU $SERVER_CPU and h2load to $LOAD_CPU.
#
# Only the hit path is measured: h2load sends one fixed body, so after the cache is warmed every
# request is a Redis cache hit (`x-cache: hit`). The miss path (Voucherify round trip) is not
# benchmarked here.
#
# Loads alternate between the two servers for ROUNDS rounds and each is reported at its median
# round, so one noisy moment on a shared machine does not decide the ratio. The gRPC and HTTP/1.1
# loads run in the same rounds and are reported against the same nghttpd reference: nghttpd sends
# no trailers and speaks no HTTP/1.1, so it is the one fixed yardstick for all three.
#
# Settings (environment): ROUNDS (3), REQUESTS (200000), CONNECTIONS (32), STREAMS (16, per connection),
# WARMUP_REQUESTS (20000), LATENCY_REQUESTS (50000, the separate latency runs), LOAD_TIMEOUT (seconds per h2load run, 120), SERVER_CPU (0),
# LOAD_CPU (1), REDIS_CPU (1), SCRATCH_PATH (passed to swift build as --scratch-path).
# Exits non-zero when a build, a server or a load run fails, or when any request did not get a 2xx.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
ensure_packages
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-200000}"
CONNECTIONS="${CONNECTIONS:-32}"
STREAMS="${STREAMS:-16}"
WARMUP_REQUESTS="${WARMUP_REQUESTS:-20000}"
LATENCY_REQUESTS="${LATENCY_REQUESTS:-50000}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-120}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
REDIS_CPU="${REDIS_CPU:-1}"
RPC_PATH="/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"
REQUEST_BODY='{"campaign":"camp_fake_loyalty","member":"MEMBER-000001"}'

die() { echo "bench: $*" >&2; exit 1; }

# --- build ------------------------------------------------------------------------------------
build_release

# --- processes and cleanup --------------------------------------------------------------------
begin_run bench

start_hit_path_stack 1000
service_url="http://127.0.0.1:$service_port$RPC_PATH"

# --- warm the cache ---------------------------------------------------------------------------
printf '%s' "$REQUEST_BODY" > "$WORK/request.json"
call_service() {  # $1: headers file, $2: body file; prints the HTTP status
  curl -sS --http2-prior-knowledge --max-time 10 -X POST -H 'content-type: application/json' \
    --data-binary "@$WORK/request.json" -D "$1" -o "$2" -w '%{http_code}' "$service_url"
}
status="$(call_service "$WORK/miss.headers" "$WORK/miss.body")"
[ "$status" = 200 ] || die "warming call answered HTTP $status: $(cat "$WORK/miss.body")"
status="$(call_service "$WORK/hit.headers" "$WORK/hit.body")"
[ "$status" = 200 ] || die "second call answered HTTP $status: $(cat "$WORK/hit.body")"
grep -qi '^x-cache: *hit' "$WORK/hit.headers" || die "second call was not a cache hit: $(tr -d '\r' < "$WORK/hit.headers")"
echo "bench: cache warmed; hit response is $(wc -c < "$WORK/hit.body") bytes" >&2

# The same request as one gRPC message: GetMemberExpirationRequest in binary (campaign = field 1,
# member = field 2, both strings) behind the 5-byte length prefix.
python3 - "$WORK/request.grpc" "$REQUEST_BODY" <<'PY'
import json, sys
request = json.loads(sys.argv[2])
def field(number, text):
    data = text.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data
message = field(1, request["campaign"]) + field(2, request["member"])
open(sys.argv[1], "wb").write(b"\0" + len(message).to_bytes(4, "big") + message)
PY
curl -sS --http2-prior-knowledge --max-time 10 -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
  --data-binary "@$WORK/request.grpc" -D "$WORK/grpc.headers" -o "$WORK/grpc.body" "$service_url"
grep -qi '^grpc-status: *0' "$WORK/grpc.headers" && grep -qi '^x-cache: *hit' "$WORK/grpc.headers" ||
  die "the gRPC call was not an OK cache hit: $(tr -d '\r' < "$WORK/grpc.headers")"
status="$(curl -sS --http1.1 --max-time 10 -X POST -H 'content-type: application/json' --data-binary "@$WORK/request.json" \
  -o /dev/null -w '%{http_code}' "$service_url")"
[ "$status" = 200 ] || die "the HTTP/1.1 call answered HTTP $status"

# --- reference server -------------------------------------------------------------------------
# The same body as a static file at the same path, so the request line can be identical.
htdocs="$WORK/htdocs"
mkdir -p "$htdocs$(dirname "$RPC_PATH")"
cp "$WORK/hit.body" "$htdocs$RPC_PATH"
nghttpd_args=(--no-tls -a 127.0.0.1 -d "$htdocs")
nghttpd --help 2>&1 | grep -q -- '--workers' && nghttpd_args+=(-n 1)
reference_port="$(free_port)"
"${pin_server[@]}" nghttpd "${nghttpd_args[@]}" "$reference_port" > "$WORK/nghttpd.log" 2>&1 &
reference_pid=$!
children+=($reference_pid)
wait_for_port "$reference_port"
reference_url="http://127.0.0.1:$reference_port$RPC_PATH"

# nghttpd serves files for GET, and (nghttp2 1.52) also answers a POST to a file path with the
# file, ignoring the body. When it does, both servers get the identical POST (same path, headers,
# body), which is the fairest comparison; otherwise the reference gets a GET of the file.
reference_method=GET
status="$(curl -sS --http2-prior-knowledge --max-time 10 -X POST -H 'content-type: application/json' \
  --data-binary "@$WORK/request.json" -o "$WORK/reference.body" -w '%{http_code}' "$reference_url" || true)"
if [ "$status" = 200 ] && cmp -s "$WORK/reference.body" "$WORK/hit.body"; then
  reference_method=POST
else
  status="$(curl -sS --http2-prior-knowledge --max-time 10 -o "$WORK/reference.body" -w '%{http_code}' "$reference_url")"
  [ "$status" = 200 ] && cmp -s "$WORK/reference.body" "$WORK/hit.body" || die "nghttpd does not serve the response file (HTTP $status)"
fi
echo "bench: reference answers $reference_method with the same body" >&2

# --- load -------------------------------------------------------------------------------------
# run_load NAME URL METHOD REQUESTS [LOG_FILE]: one h2load run; fails unless every request got 2xx.
# METHOD is GET, POST (Connect JSON over h2c), GRPC (binary gRPC) or H1 (Connect JSON over HTTP/1.1
# keep-alive, one request at a time per connection).
run_load() {
  local name="$1" url="$2" method="$3" count="$4" log="${5:-}" out="$WORK/h2load-$1.out"
  local args=(-n "$count" -c "$CONNECTIONS" -m "$STREAMS" -t 1)
  case "$method" in
    POST) args+=(-d "$WORK/request.json" -H 'content-type: application/json') ;;
    GRPC) args+=(-d "$WORK/request.grpc" -H 'content-type: application/grpc' -H 'te: trailers') ;;
    H1) args=(--h1 -n "$count" -c "$CONNECTIONS" -m 1 -t 1 -d "$WORK/request.json" -H 'content-type: application/json') ;;
  esac
  [ -n "$log" ] && args+=(--log-file "$log")
  local rc=0
  timeout --kill-after=5 "$LOAD_TIMEOUT" "${pin_load[@]}" h2load "${args[@]}" "$url" > "$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$out" >&2
    [ "$rc" -eq 124 ] && die "h2load ($name) did not finish within ${LOAD_TIMEOUT}s"
    die "h2load ($name) exited with $rc"
  fi
  # requests: 200000 total, 200000 started, 200000 done, 200000 succeeded, 0 failed, 0 errored, 0 timeout
  # status codes: 200000 2xx, 0 3xx, 0 4xx, 0 5xx
  if ! awk -v n="$count" '
      /^requests:/     { ok_req = ($2 == n && $4 == n && $6 == n && $8 == n && $10 == 0 && $12 == 0 && $14 == 0) }
      /^status codes:/ { ok_status = ($3 == n) }
      END { exit !(ok_req && ok_status) }' "$out"; then
    cat "$out" >&2
    die "h2load ($name): not every one of $count requests succeeded with 2xx"
  fi
  if [ -n "$log" ]; then
    awk -v n="$count" -F '\t' '$2 >= 200 && $2 < 300 { good++ } END { exit !(NR == n && good == n) }' "$log" ||
      die "h2load ($name): the per-request log does not show $count 2xx responses"
  fi
}

# Prints req/s from h2load's "finished in 1.23s, 162000.00 req/s, 10.5MB/s" line.
requests_per_second() { awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) print $i }' "$1"; }

# Prints "p50 p99" in milliseconds (nearest rank) from an h2load --log-file (3rd column: µs).
percentiles() {
  cut -f3 "$1" | sort -n | awk '{ v[NR] = $1 }
    function rank(p,  r) { r = int(p * NR); if (r < p * NR) r++; if (r < 1) r = 1; return v[r] }
    END { printf "%.3f %.3f\n", rank(0.50) / 1000, rank(0.99) / 1000 }'
}

peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

metric() {  # value of the series $1 (name{labels}) on /metrics, empty when not exposed
  curl -sS --http2-prior-knowledge --max-time 10 "http://127.0.0.1:$service_port/metrics" 2>/dev/null |
    awk -v want="$1" '$1 == want { print $2 }'
}
ok_answers() {  # GetMemberExpiration's ok answers over Connect (HTTP/2 and HTTP/1.1) and gRPC
  local series='points_expiry_requests_total{method="GetMemberExpiration",protocol="%s",code="ok"}'
  # shellcheck disable=SC2059
  echo $(( $(metric "$(printf "$series" connect)") + $(metric "$(printf "$series" grpc)") ))
}


echo "bench: $ROUNDS rounds of h2load -n $REQUESTS -c $CONNECTIONS -m $STREAMS -t 1 (warm-up: $WARMUP_REQUESTS requests)" >&2
misses_before="$(metric 'points_expiry_cache_results_total{result="miss"}')"
ok_before="$(ok_answers)"
run_load service-warmup "$service_url" POST "$WARMUP_REQUESTS"
run_load grpc-warmup "$service_url" GRPC "$WARMUP_REQUESTS"
run_load h1-warmup "$service_url" H1 "$WARMUP_REQUESTS"
run_load nghttpd-warmup "$reference_url" "$reference_method" "$WARMUP_REQUESTS"
# Throughput rounds write no per-request log: h2load's --log-file caps the load generator
# (near 357k req/s here), so the faster server would not be measured at its own speed.
for round in $(seq 1 "$ROUNDS"); do
  run_load "service-$round" "$service_url" POST "$REQUESTS"
  run_load "nghttpd-$round" "$reference_url" "$reference_method" "$REQUESTS"
  run_load "grpc-$round" "$service_url" GRPC "$REQUESTS"
  run_load "h1-$round" "$service_url" H1 "$REQUESTS"
  echo "bench: round $round: service $(requests_per_second "$WORK/h2load-service-$round.out") req/s," \
       "nghttpd $(requests_per_second "$WORK/h2load-nghttpd-$round.out") req/s," \
       "gRPC $(requests_per_second "$WORK/h2load-grpc-$round.out") req/s," \
       "HTTP/1.1 $(requests_per_second "$WORK/h2load-h1-$round.out") req/s" >&2
done
# Latency comes from separate runs with the per-request log.
run_load service-latency "$service_url" POST "$LATENCY_REQUESTS" "$WORK/service-latency.tsv"
run_load nghttpd-latency "$reference_url" "$reference_method" "$LATENCY_REQUESTS" "$WORK/nghttpd-latency.tsv"
run_load grpc-latency "$service_url" GRPC "$LATENCY_REQUESTS" "$WORK/grpc-latency.tsv"
run_load h1-latency "$service_url" H1 "$LATENCY_REQUESTS" "$WORK/h1-latency.tsv"
service_rss="$(peak_rss_kib "$service_pid")"
reference_rss="$(peak_rss_kib "$reference_pid")"
misses_after="$(metric 'points_expiry_cache_results_total{result="miss"}')"
ok_after="$(ok_answers)"
# gRPC answers errors with HTTP 200 too, so h2load's 2xx count cannot tell: every service request
# since the first warm-up must have been counted ok by the service itself.
service_requests=$((3 * WARMUP_REQUESTS + 3 * ROUNDS * REQUESTS + 3 * LATENCY_REQUESTS))  # JSON, gRPC and HTTP/1.1 loads
[ "$((ok_after - ok_before))" = "$service_requests" ] ||
  die "the service counted $((ok_after - ok_before)) ok answers for $service_requests requests"
if [ -n "$misses_before" ] && [ "$misses_before" != "$misses_after" ]; then
  die "the service had cache misses during the load ($misses_before -> $misses_after); not a hit-path run"
fi

# median_round NAME: the round whose req/s is the median of NAME's rounds.
median_round() {
  for round in $(seq 1 "$ROUNDS"); do
    echo "$(requests_per_second "$WORK/h2load-$1-$round.out") $round"
  done | sort -g | awk '{ rounds[NR] = $2 } END { print rounds[int((NR + 1) / 2)] }'
}

# --- report -----------------------------------------------------------------------------------
service_round="$(median_round service)"
reference_round="$(median_round nghttpd)"
service_rps="$(requests_per_second "$WORK/h2load-service-$service_round.out")"
reference_rps="$(requests_per_second "$WORK/h2load-nghttpd-$reference_round.out")"
read -r service_p50 service_p99 < <(percentiles "$WORK/service-latency.tsv")
read -r reference_p50 reference_p99 < <(percentiles "$WORK/nghttpd-latency.tsv")
grpc_rps="$(requests_per_second "$WORK/h2load-grpc-$(median_round grpc).out")"
h1_rps="$(requests_per_second "$WORK/h2load-h1-$(median_round h1).out")"
read -r grpc_p50 grpc_p99 < <(percentiles "$WORK/grpc-latency.tsv")
read -r h1_p50 h1_p99 < <(percentiles "$WORK/h1-latency.tsv")
ratio="$(awk -v a="$service_rps" -v b="$reference_rps" 'BEGIN { printf "%.3f", a / b }')"
verdict="$(awk -v r="$ratio" 'BEGIN { print (r >= 0.5 ? "met" : "NOT met") }')"

echo
echo "GetMemberExpiration cache-hit path vs nghttpd static file (same body, $(wc -c < "$WORK/hit.body") bytes)"
echo "h2load -n $REQUESTS -c $CONNECTIONS -m $STREAMS -t 1, median of $ROUNDS alternating rounds without per-request" \
     "logging; p50/p99 from separate $LATENCY_REQUESTS-request runs with --log-file;" \
     "servers on CPU $SERVER_CPU, h2load on CPU $LOAD_CPU; service POST, nghttpd $reference_method"
printf '%-28s %12s %10s %10s %14s\n' server 'req/s' 'p50 ms' 'p99 ms' 'peak RSS MiB'
printf '%-28s %12.0f %10s %10s %14.1f\n' 'points-expiry (WORKERS=1)' "$service_rps" "$service_p50" "$service_p99" \
  "$(awk -v k="$service_rss" 'BEGIN { print k / 1024 }')"
printf '%-28s %12.0f %10s %10s %14.1f\n' 'nghttpd (-n 1)' "$reference_rps" "$reference_p50" "$reference_p99" \
  "$(awk -v k="$reference_rss" 'BEGIN { print k / 1024 }')"
echo
echo "The same hit over other protocols (same service process, same rounds; ratio against the nghttpd line above)"
printf '%-28s %12s %10s %10s %8s\n' protocol 'req/s' 'p50 ms' 'p99 ms' ratio
printf '%-28s %12.0f %10s %10s %8.3f\n' 'gRPC (binary, h2c)' "$grpc_rps" "$grpc_p50" "$grpc_p99" \
  "$(awk -v a="$grpc_rps" -v b="$reference_rps" 'BEGIN { print a / b }')"
printf '%-28s %12.0f %10s %10s %8.3f\n' "HTTP/1.1 keep-alive (-m 1)" "$h1_rps" "$h1_p50" "$h1_p99" \
  "$(awk -v a="$h1_rps" -v b="$reference_rps" 'BEGIN { print a / b }')"
echo
echo "req/s ratio service/nghttpd: $ratio (target >= 0.5: $verdict)"
