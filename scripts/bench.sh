#!/usr/bin/env bash
# Benchmarks the cache-hit path of GetMemberExpiration against static HTTP/2 servers serving the
# very same response body at the very same path, so every server answers the same h2load request
# with the same bytes. Prints one table of req/s, p50/p99 at half the peak rate and peak RSS, and
# then, LAST on stdout, the headline: service / nghttpd req/s, Connect JSON POST over h2c, one
# worker each.
#
# One worker each: the service runs with WORKERS=1, nghttpd with -n 1, h2o with num-threads: 1;
# each server in turn gets CPU $SERVER_CPU (all are pinned there and only the one under load
# works), h2load gets $LOAD_CPU. Loads, per round:
#   POST   the service, Connect JSON over h2c (prior knowledge)   vs nghttpd answering the same POST
#          with the file (nghttp2 1.52 does; else nghttpd gets a GET of it, and the report says so)
#   GET    the service, Connect GET (?encoding=json&message=...)  vs nghttpd and h2o (Debian `h2o`)
#          serving the file for the same URL (static servers ignore the query)
#   gRPC   the service, binary gRPC over h2c; HTTP/1.1: the service, Connect JSON, keep-alive, one
#          request at a time per connection (h2load --h1); both against the nghttpd POST line
#   8 workers: the service with WORKERS=8 (a second process on the same Redis) vs nghttpd -n 8,
#          POST, nothing pinned (this VM has 2 cores: 8 workers share them with h2load)
# Only the hit path is measured: h2load sends one fixed request, so after the warm-up every
# answer is a cache hit (checked: the service's miss count must not move, and it must count every
# request ok). The miss path (Voucherify round trip) is not benchmarked here.
#
# Throughput runs write no per-request log (h2load's --log-file caps the load generator near
# 357k req/s here, which would throttle the reference). Each load alternates with the others for
# ROUNDS rounds and is reported at its median round. Latency comes from separate runs with
# --log-file at half the measured peak rate (h2load --rps per client x CONNECTIONS = half the
# median req/s), LATENCY_SECONDS long. Peak RSS is each server's VmHWM at the end.
#
# Settings (environment): ROUNDS (3), REQUESTS (200000), CONNECTIONS (32), STREAMS (16, per
# connection), WARMUP_REQUESTS (20000), LATENCY_SECONDS (4), LOAD_TIMEOUT (seconds per h2load
# run, 120), SERVER_CPU (0), LOAD_CPU (1), REDIS_CPU (1), WORKERS_MANY (8), SCRATCH_PATH (passed
# to swift build as --scratch-path). Installs h2o (Debian) when missing.
# Exits non-zero when a build, a server or a load run fails, when any request did not get a 2xx,
# or when the service answered any request other than as an ok cache hit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
DEBIAN_PACKAGES+=(h2o)
ensure_packages
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-200000}"
CONNECTIONS="${CONNECTIONS:-32}"
STREAMS="${STREAMS:-16}"
WARMUP_REQUESTS="${WARMUP_REQUESTS:-20000}"
LATENCY_SECONDS="${LATENCY_SECONDS:-4}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-120}"
WORKERS_MANY="${WORKERS_MANY:-8}"

die() { echo "bench: $*" >&2; exit 1; }

# --- build and processes ----------------------------------------------------------------------
build_release
begin_run bench
start_hit_path_stack 1000
one_port=$service_port one_pid=$service_pid
one_url="http://127.0.0.1:$one_port$HIT_PATH"
write_hit_requests

# --- warm the cache and check every form answers the same bytes --------------------------------
post() {  # $1: URL, $2: headers file, $3: body file; prints the HTTP status
  curl -sS --http2-prior-knowledge --max-time 10 -X POST -H 'content-type: application/json' \
    --data-binary "@$WORK/request.json" -D "$2" -o "$3" -w '%{http_code}' "$1"
}
status="$(post "$one_url" "$WORK/miss.headers" "$WORK/miss.body")"
[ "$status" = 200 ] || die "warming call answered HTTP $status: $(cat "$WORK/miss.body")"
status="$(post "$one_url" "$WORK/hit.headers" "$WORK/hit.body")"
[ "$status" = 200 ] || die "second call answered HTTP $status: $(cat "$WORK/hit.body")"
grep -qi '^x-cache: *hit' "$WORK/hit.headers" || die "second call was not a cache hit: $(tr -d '\r' < "$WORK/hit.headers")"
body_bytes="$(wc -c < "$WORK/hit.body")"
echo "bench: cache warmed; hit response is $body_bytes bytes" >&2
status="$(curl -sS --http2-prior-knowledge --max-time 10 -o "$WORK/get.body" -w '%{http_code}' "$one_url?$hit_query")"
[ "$status" = 200 ] && cmp -s "$WORK/get.body" "$WORK/hit.body" || die "the Connect GET answered HTTP $status, or other bytes than the POST"

curl -sS --http2-prior-knowledge --max-time 10 -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
  --data-binary "@$WORK/request.grpc" -D "$WORK/grpc.headers" -o "$WORK/grpc.body" "$one_url"
grep -qi '^grpc-status: *0' "$WORK/grpc.headers" && grep -qi '^x-cache: *hit' "$WORK/grpc.headers" ||
  die "the gRPC call was not an OK cache hit: $(tr -d '\r' < "$WORK/grpc.headers")"
status="$(curl -sS --http1.1 --max-time 10 -X POST -H 'content-type: application/json' --data-binary "@$WORK/request.json" \
  -o /dev/null -w '%{http_code}' "$one_url")"
[ "$status" = 200 ] || die "the HTTP/1.1 call answered HTTP $status"

# --- reference servers ------------------------------------------------------------------------
# The same body as a static file at the same path, so the request line can be identical.
htdocs="$WORK/htdocs"
mkdir -p "$htdocs$(dirname "$HIT_PATH")"
cp "$WORK/hit.body" "$htdocs$HIT_PATH"
nghttpd_supports_workers=false
nghttpd --help 2>&1 | grep -q -- '--workers' && nghttpd_supports_workers=true
start_nghttpd() {  # $1: workers; the rest: the pinning prefix. Sets nghttpd_port, nghttpd_pid.
  local workers=$1 args=(--no-tls -a 127.0.0.1 -d "$htdocs")
  shift
  "$nghttpd_supports_workers" && args+=(-n "$workers")
  nghttpd_port="$(free_port)"
  "$@" nghttpd "${args[@]}" "$nghttpd_port" > "$WORK/nghttpd-$workers.log" 2>&1 &
  nghttpd_pid=$!
  children+=($nghttpd_pid)
  wait_for_port "$nghttpd_port"
}
start_nghttpd 1 "${pin_server[@]}"
ng_port=$nghttpd_port ng_pid=$nghttpd_pid
ng_url="http://127.0.0.1:$ng_port$HIT_PATH"

# h2o: one worker thread, cleartext HTTP/2 (prior knowledge) and no access log; as this user
# (started as root it would become nobody, who cannot read $WORK).
h2o_port="$(free_port)"
cat > "$WORK/h2o.conf" <<EOF
user: $(id -un)
num-threads: 1
listen:
  host: 127.0.0.1
  port: $h2o_port
error-log: $WORK/h2o.log
hosts:
  default:
    paths:
      /:
        file.dir: $htdocs
EOF
"${pin_server[@]}" h2o -c "$WORK/h2o.conf" > "$WORK/h2o-stdout.log" 2>&1 &
h2o_pid=$!
children+=($h2o_pid)
wait_for_port "$h2o_port"
h2o_url="http://127.0.0.1:$h2o_port$HIT_PATH"
for url in "$ng_url?$hit_query" "$h2o_url?$hit_query"; do
  status="$(curl -sS --http2-prior-knowledge --max-time 10 -o "$WORK/reference.body" -w '%{http_code}' "$url")"
  [ "$status" = 200 ] && cmp -s "$WORK/reference.body" "$WORK/hit.body" || die "$url does not serve the response file (HTTP $status)"
done

# nghttpd serves files for GET, and (nghttp2 1.52) also answers a POST to a file path with the
# file, ignoring the body. When it does, both servers get the identical POST (same path, headers,
# body), which is the fairest comparison; otherwise the reference gets a GET of the file.
ng_post=POST
status="$(post "$ng_url" /dev/null "$WORK/reference.body" || true)"
if [ "$status" != 200 ] || ! cmp -s "$WORK/reference.body" "$WORK/hit.body"; then ng_post=GET; fi
echo "bench: nghttpd answers $ng_post with the same body" >&2

# The many-worker pair: a second service process and nghttpd -n WORKERS_MANY, nothing pinned.
pin_service=()
start_service "$WORKERS_MANY"
many_port=$service_port many_pid=$service_pid
many_url="http://127.0.0.1:$many_port$HIT_PATH"
status="$(post "$many_url" /dev/null "$WORK/many.body")"
[ "$status" = 200 ] && cmp -s "$WORK/many.body" "$WORK/hit.body" || die "the $WORKERS_MANY-worker service answered HTTP $status or other bytes"
start_nghttpd "$WORKERS_MANY"
ng_many_port=$nghttpd_port ng_many_pid=$nghttpd_pid
ng_many_url="http://127.0.0.1:$ng_many_port$HIT_PATH"

# --- load -------------------------------------------------------------------------------------
# Requests sent to each service process, to hold against its own ok count at the end.
one_sent=0 many_sent=0

# run_load NAME URL METHOD REQUESTS [LOG_FILE [RPS_PER_CLIENT]]: one h2load run; fails unless every
# request got 2xx. METHOD as for hit_load_args (lib.sh). Names starting "many-" run unpinned.
run_load() {
  local name="$1" url="$2" method="$3" count="$4" log="${5:-}" rps="${6:-}" out="$WORK/h2load-$1.out"
  local pin=("${pin_load[@]}")
  hit_load_args "$method" "$count"
  local args=("${load_args[@]}")
  [ "$method" = GET ] && url="$url?$hit_query"
  [[ "$name" == many-* ]] && pin=()
  [ -n "$log" ] && args+=(--log-file "$log")
  [ -n "$rps" ] && args+=(--rps "$rps")
  case "$url" in
    "$one_url"*) one_sent=$((one_sent + count)) ;;
    "$many_url"*) many_sent=$((many_sent + count)) ;;
  esac
  local rc=0
  timeout --kill-after=5 "$LOAD_TIMEOUT" "${pin[@]}" h2load "${args[@]}" "$url" > "$out" 2>&1 || rc=$?
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

peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"; }

metrics_of() { curl -sS --http2-prior-knowledge --max-time 10 "http://127.0.0.1:$1/metrics"; }
ok_answers() {  # $1: port; GetMemberExpiration's ok answers over Connect (HTTP/2 and HTTP/1.1) and gRPC
  metrics_of "$1" | awk '/^points_expiry_requests_total\{/ && /method="GetMemberExpiration"/ && /code="ok"/ && /protocol="(connect|grpc)"/ { n += $2 }
    END { print n + 0 }'
}
not_hits() {  # $1: port; member answers not served as hits
  metrics_of "$1" | awk '/^points_expiry_cache_results_total\{/ && !/result="hit"/ { n += $2 } END { print n + 0 }'
}
tier_hits() {  # $1: port; hits the in-process tier answered (0 without a tier)
  metrics_of "$1" | awk '/^points_expiry_local_cache_hits_total/ { n += $2 } END { print n + 0 }'
}

# The loads: name, service or server URL, method; one round runs each once.
loads=(
  "service-post $one_url POST" "nghttpd-post $ng_url $ng_post"
  "service-get $one_url GET" "nghttpd-get $ng_url GET" "h2o-get $h2o_url GET"
  "service-grpc $one_url GRPC" "service-h1 $one_url H1"
  "many-service-post $many_url POST" "many-nghttpd-post $ng_many_url $ng_post"
)
echo "bench: $ROUNDS rounds of h2load -n $REQUESTS -c $CONNECTIONS -m $STREAMS -t 1 over ${#loads[@]} loads (warm-up: $WARMUP_REQUESTS requests each)" >&2
one_before="$(ok_answers "$one_port")" many_before="$(ok_answers "$many_port")"
one_misses="$(not_hits "$one_port")" many_misses="$(not_hits "$many_port")" one_tier="$(tier_hits "$one_port")"
for load in "${loads[@]}"; do
  read -r name url method <<< "$load"
  run_load "$name-warmup" "$url" "$method" "$WARMUP_REQUESTS"
done
for round in $(seq 1 "$ROUNDS"); do
  line="bench: round $round:"
  for load in "${loads[@]}"; do
    read -r name url method <<< "$load"
    run_load "$name-$round" "$url" "$method" "$REQUESTS"
    line+=" $name $(requests_per_second "$WORK/h2load-$name-$round.out")"
  done
  echo "$line req/s" >&2
done

# median NAME: the median round's req/s of NAME.
median() {
  for round in $(seq 1 "$ROUNDS"); do requests_per_second "$WORK/h2load-$1-$round.out"; done |
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
declare -A rps p50 p99 rss
for load in "${loads[@]}"; do
  read -r name url method <<< "$load"
  rps[$name]="$(median "$name")"
done

# Latency at half the peak: each client paced to its share of half the median req/s.
for load in "${loads[@]}"; do
  read -r name url method <<< "$load"
  per_client="$(awk -v r="${rps[$name]}" -v c="$CONNECTIONS" 'BEGIN { v = int(r / 2 / c); print (v < 1 ? 1 : v) }')"
  count=$((per_client * CONNECTIONS * LATENCY_SECONDS))
  run_load "$name-latency" "$url" "$method" "$count" "$WORK/$name-latency.tsv" "$per_client"
  read -r "p50[$name]" "p99[$name]" < <(percentiles "$WORK/$name-latency.tsv")
done

rss[service]="$(peak_rss_mib "$one_pid")" rss[nghttpd]="$(peak_rss_mib "$ng_pid")" rss[h2o]="$(peak_rss_mib "$h2o_pid")"
rss[many-service]="$(peak_rss_mib "$many_pid")" rss[many-nghttpd]="$(peak_rss_mib "$ng_many_pid")"

# Every request the services got must have been an ok hit, by their own counts (gRPC answers
# errors with HTTP 200 too, so h2load's 2xx count alone cannot tell).
for side in one many; do
  port_var="${side}_port" sent_var="${side}_sent" before_var="${side}_before" misses_var="${side}_misses"
  ok=$(( $(ok_answers "${!port_var}") - ${!before_var} ))
  [ "$ok" = "${!sent_var}" ] || die "the service ($side) counted $ok ok answers for ${!sent_var} requests"
  [ "$(not_hits "${!port_var}")" = "${!misses_var}" ] || die "the service ($side) answered some requests other than as hits during the load"
done
one_tier=$(( $(tier_hits "$one_port") - one_tier ))

# --- report -----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
row() {  # label, load name, RSS key, reference load name (or empty)
  local against="-"
  [ -n "$4" ] && against="$(ratio "${rps[$2]}" "${rps[$4]}")"
  printf '%-44s %10.0f %8s %8s %9s %8s\n' "$1" "${rps[$2]}" "${p50[$2]}" "${p99[$2]}" "$3" "$against"
}
echo
echo "GetMemberExpiration cache-hit path vs static servers (same body, $body_bytes bytes, same path)"
echo "h2load -n $REQUESTS -c $CONNECTIONS -m $STREAMS -t 1, median of $ROUNDS alternating rounds, no per-request log;" \
     "p50/p99 (ms) from separate ${LATENCY_SECONDS}s runs at half the median req/s (--rps per client, --log-file);" \
     "one worker each on CPU $SERVER_CPU, h2load on CPU $LOAD_CPU; $(nproc) CPUs"
printf '%-44s %10s %8s %8s %9s %8s\n' load 'req/s' 'p50' 'p99' 'RSS MiB' ratio
row "points-expiry POST JSON h2c (WORKERS=1)" service-post "${rss[service]}" nghttpd-post
row "nghttpd -n 1 $ng_post (same file)" nghttpd-post "${rss[nghttpd]}" ""
row "points-expiry Connect GET (WORKERS=1)" service-get "${rss[service]}" nghttpd-get
row "nghttpd -n 1 GET" nghttpd-get "${rss[nghttpd]}" ""
row "h2o 2.2 GET (num-threads: 1)" h2o-get "${rss[h2o]}" ""
printf '%-44s %10s %8s %8s %9s %8s\n' "  service GET / h2o GET" "" "" "" "" "$(ratio "${rps[service-get]}" "${rps[h2o-get]}")"
row "points-expiry gRPC binary h2c (WORKERS=1)" service-grpc "${rss[service]}" nghttpd-post
row "points-expiry HTTP/1.1 keep-alive (-m 1)" service-h1 "${rss[service]}" nghttpd-post
row "points-expiry POST (WORKERS=$WORKERS_MANY, unpinned)" many-service-post "${rss[many-service]}" many-nghttpd-post
row "nghttpd -n $WORKERS_MANY $ng_post (unpinned)" many-nghttpd-post "${rss[many-nghttpd]}" ""
echo "(ratio: against the nghttpd line below it; gRPC and HTTP/1.1 against nghttpd POST, which sends no trailers and"
echo " speaks no HTTP/1.1. RSS: VmHWM of the process, the WORKERS=1 service's shared by its four loads. The $WORKERS_MANY-worker"
echo " pair shares this machine's $(nproc) CPUs with h2load and each other's idle threads. The WORKERS=1 service answered"
echo " $one_tier of its $one_sent requests from its in-process tier, the others from Redis.)"
echo
headline="$(ratio "${rps[service-post]}" "${rps[nghttpd-post]}")"
verdict="$(awk -v r="$headline" 'BEGIN { print (r >= 1.0 ? "met" : "NOT met") }')"
echo "req/s ratio service/nghttpd, POST JSON h2c, one worker each: $headline (target >= 1.0: $verdict)"
