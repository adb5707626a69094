#!/usr/bin/env bash
# Replays the shield scenarios of issue 8 against real processes: one redis-server, the fake
# Voucherify and TWO `points-expiry serve` replicas (WORKERS=2 each) sharing them, as a fleet
# does in production. It is a benchmark, not a test: it prints what happened and never judges.
#
# For every measured load it prints: requests (and wall time), upstream calls from the fake's
# /_fake/stats (injected failures, 429s over its limit, most calls in one window, most in flight
# at once, calls per member and, for up to 3 members, per page), results by code (HTTP status ->
# Connect code; x-cache hit/miss/stale of the 200s; how many 429s carried retry-after) and p50/p99
# latency as curl saw it (a new connection per request included). A summary table closes the
# run: one line per measured load, with the issue's expectation next to it.
#
# Scenarios (SCENARIOS picks a subset, e.g. SCENARIOS=1,6):
#   1  200 concurrent callers for one uncached member, fake 300 ms; again for a 3-page member
#      (250 buckets)
#   2  1,000 concurrent callers for one uncached member, fake 300 ms
#   3  2,000 entries expiring at once: CACHE_TTL_SECONDS=2 and default stale windows; fill, wait
#      past fresh, read each member once, all at once. The hit-path reference is the same read on
#      its own fleet with the default TTL (with 2 s, the first fill waves expire before the fill ends)
#   4  Voucherify failing a second after 100 entries expired (CACHE_TTL_SECONDS=1, stale-while-
#      revalidate off so that any stale answer is stale-if-error), 1,000 requests 250 at a time:
#      503 until cleared; then, on a fresh fleet, dropped connections
#   5  one 429 with Retry-After 20, then ~3 s of waves of uncached members over both replicas, and
#      a member cached (TTL 1, stale-while-revalidate off) before, once per replica a wave
#   6  1,000 concurrent callers for an unknown member (CACHE_NOT_FOUND_SECONDS default 60)
#   7  rate budget: the fake enforces 2,000 calls/60 s, the service gets VOUCHERIFY_RATE_LIMIT=2000/min
#      (and VOUCHERIFY_INTERACTIVE_RESERVE=0.5); BUDGET_MEMBERS distinct uncached members,
#      BUDGET_CONCURRENCY at a time, and alongside a trickle of requests for other members.
#      WarmMembers does not exist yet, so the bulk load is GetMemberExpiration too
#   8  midnight passed, Voucherify's nightly job has not: a member whose only bucket expired
#      yesterday, 100 requests 4 at a time
#
# Every scenario (each part of 4, each fleet of 3) gets a fresh fake and fresh replicas on a
# flushed Redis, so nothing leaks into the next one (in-process state such as a pause included).
# Load: Connect GETs over h2c from curl's parallel mode, in waves (see fire), at most 250 requests
# per curl process, several processes at once above that (request i goes to replica i % 2).
#
# Settings (environment): SCENARIOS (1,2,3,4,5,6,7,8), SINGLE_FLIGHT_REQUESTS (200), HERD_REQUESTS
# (1000), EXPIRING_MEMBERS (2000), EXPIRING_READS (1, reads per member past fresh),
# EXPIRING_CONCURRENCY (EXPIRING_MEMBERS), OUTAGE_MEMBERS (100), OUTAGE_REQUESTS (1000),
# RATE_LIMIT_SECONDS (3), NOT_FOUND_REQUESTS (1000), BUDGET_MEMBERS (10000), BUDGET_CONCURRENCY (100),
# BUDGET_SECONDS (45: no bulk wave starts later; keeps scenario 7 under ~90 s), MIDNIGHT_REQUESTS
# (100), FILL_CONCURRENCY (100, for filling the cache before a load), REQUEST_TIMEOUT (10: curl
# --max-time per request, seconds), SCRATCH_PATH (passed to swift build as --scratch-path).
# Exits non-zero only when the set-up fails (build, a process not starting or not ready, the fake
# refusing a control call); the numbers never decide the exit code. About 2 minutes on 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail
ensure_packages
cd "$ROOT"

SCENARIOS="${SCENARIOS:-1,2,3,4,5,6,7,8}"
SINGLE_FLIGHT_REQUESTS="${SINGLE_FLIGHT_REQUESTS:-200}"
HERD_REQUESTS="${HERD_REQUESTS:-1000}"
EXPIRING_MEMBERS="${EXPIRING_MEMBERS:-2000}"
EXPIRING_READS="${EXPIRING_READS:-1}"
EXPIRING_CONCURRENCY="${EXPIRING_CONCURRENCY:-$EXPIRING_MEMBERS}"
OUTAGE_MEMBERS="${OUTAGE_MEMBERS:-100}"
OUTAGE_REQUESTS="${OUTAGE_REQUESTS:-1000}"
RATE_LIMIT_SECONDS="${RATE_LIMIT_SECONDS:-3}"
NOT_FOUND_REQUESTS="${NOT_FOUND_REQUESTS:-1000}"
BUDGET_MEMBERS="${BUDGET_MEMBERS:-10000}"
BUDGET_CONCURRENCY="${BUDGET_CONCURRENCY:-100}"
BUDGET_SECONDS="${BUDGET_SECONDS:-45}"
MIDNIGHT_REQUESTS="${MIDNIGHT_REQUESTS:-100}"
FILL_CONCURRENCY="${FILL_CONCURRENCY:-100}"
REQUEST_TIMEOUT="${REQUEST_TIMEOUT:-10}"
CAMPAIGN=camp_fake_loyalty
RPC_PATH="/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"
APP_ID=bench-app-id
APP_TOKEN=bench-app-token
# Far above anything a scenario sends and not enforced: only scenario 7 is about the budget.
UNLIMITED=1000000

die() { echo "bench-shield: $*" >&2; exit 1; }
note() { echo "bench-shield: $*" >&2; }
wants() { [[ ",$SCENARIOS," == *",$1,"* ]]; }

# --- build ------------------------------------------------------------------------------------
build_release

# --- processes and cleanup --------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/points-expiry-bench-shield.XXXXXX")"
# Only processes still running are listed (a finished scenario's are taken off), so a PID the
# system reused later is never killed.
children=()      # redis-server, for the whole run
fleet_pids=()    # the current scenario's fake, replicas and load trickle
load_pids=()     # the curl processes of the wave under way
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  finish_run bench-shield "$status" "${load_pids[@]}" "${fleet_pids[@]}" "${children[@]}"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1,000+ concurrent callers are 1,000+ sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- stats (python3, stdlib only) -------------------------------------------------------------
cat > "$WORK/shield.py" <<'PY'
import datetime, json, math, sys, urllib.parse

CODES = {200: "ok", 400: "invalid_argument", 404: "not_found", 429: "resource_exhausted",
         500: "internal", 503: "unavailable", 504: "deadline_exceeded", 0: "no answer (curl gave up)"}
COLUMNS = [("requests", 8), ("upstream", 8), ("ok", 5), ("hit", 5), ("miss", 5), ("stale", 5), ("404", 5),
           ("429", 5), ("503", 5), ("504", 5), ("500", 5), ("other", 5), ("p50 ms", 8), ("p99 ms", 8)]

def plan(prefix, concurrency, members_file, *bases):
    """curl -K config files, one per process: CONCURRENCY requests per wave, at most 250 per
    process. Request i goes to replica i % len(bases); within a wave, to process i % processes,
    so with an even number of processes each talks to one replica. Prints "wave processes" lines."""
    members = [m for m in open(members_file).read().split("\n") if m]
    concurrency = max(1, int(concurrency))
    for wave, start in enumerate(range(0, len(members), concurrency)):
        chunk = members[start:start + concurrency]
        parts = math.ceil(len(chunk) / 250)
        files = [open(f"{prefix}.{wave}.{p}.cfg", "w") for p in range(parts)]
        for j, member in enumerate(chunk):
            message = urllib.parse.quote(json.dumps({"campaign": CAMPAIGN, "member": member}, separators=(",", ":")), safe="")
            base = bases[(start + j) % len(bases)]
            files[j % parts].write(f'url = "{base}{RPC}?encoding=json&message={message}"\noutput = "/dev/null"\n')
        for f in files: f.close()
        print(wave, parts)

def rank(values, p):
    if not values: return float("nan")
    r = max(1, math.ceil(p * len(values)))
    return values[r - 1]

def report(label, expect, results_file, planned, seconds, stats_file, summary_file, metrics_file):
    rows = [line.split("\t") for line in open(results_file).read().split("\n") if line]
    codes, cache, retry = {}, {}, {}
    times = []
    for row in rows:
        row += [""] * (4 - len(row))
        code = int(row[0]) if row[0].isdigit() else 0
        codes[code] = codes.get(code, 0) + 1
        times.append(float(row[1] or 0) * 1000)
        if code == 200: cache[row[2] or "(none)"] = cache.get(row[2] or "(none)", 0) + 1
        if code == 429 and row[3]: retry[row[3]] = retry.get(row[3], 0) + 1
    times.sort()
    n = len(rows)
    p50, p99 = rank(times, 0.50), rank(times, 0.99)
    stats = json.load(open(stats_file)) if stats_file != "-" else None
    share = lambda k: f"{100 * k / n:.1f}%" if n else "-"
    if label == "-":   # a set-up load (a fill): one line, no summary row
        print(f"   fill: {n} requests in {seconds} s, " + ", ".join(f"{c} {CODES.get(c, 'http')}: {k}" for c, k in sorted(codes.items()))
              + (f", upstream {stats['calls']} calls" if stats else ""))
        return
    print(f"   requests  {n} (planned {planned}) in {seconds} s")
    if stats:
        by_member = stats["by_member"]
        reads = sorted(by_member.values())
        line = (f"   upstream  {stats['calls']} calls (injected failures {stats['failed']}, rate_limited {stats['rate_limited']}, "
                f"max_in_window {stats['max_in_window']}, max_concurrent {stats['max_concurrent']}); "
                f"{len(by_member)} member(s) read, calls per member (pages included) max {reads[-1] if reads else 0}, "
                f"members called more than once {sum(1 for r in reads if r > 1)}")
        print(line)
        if 0 < len(by_member) <= 3:
            print("   per page  " + ", ".join(f"{k}={v}" for k, v in stats["by_page"].items()))
        concurrent = max(stats["by_member_max_concurrent"].values(), default=0)
        print(f"   most reads of one member in flight at once: {concurrent}")
    else:
        print("   upstream  (counted in the line above: one fake, one set of stats)")
    for code, count in sorted(codes.items()):
        extra = ""
        if code == 200:
            extra = " (" + ", ".join(f"{k} {v} = {share(v)}" for k, v in sorted(cache.items())) + ")"
        if code == 429:
            carried = sum(retry.values())
            extra = f" ({carried} with retry-after" + (": " + ", ".join(f"{k} s x{v}" for k, v in sorted(retry.items())) if retry else "") + ")"
        print(f"   {code:>3} {CODES.get(code, 'http ' + str(code))}: {count} = {share(count)}{extra}")
    print(f"   latency   p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    known = {200, 404, 429, 503, 504, 500}
    cells = [n, stats["calls"] if stats else "-", codes.get(200, 0), cache.get("hit", 0), cache.get("miss", 0),
             cache.get("stale", 0), codes.get(404, 0), codes.get(429, 0), codes.get(503, 0), codes.get(504, 0),
             codes.get(500, 0), sum(k for c, k in codes.items() if c not in known), f"{p50:.1f}", f"{p99:.1f}"]
    with open(summary_file, "a") as f:
        f.write("\t".join([label] + [str(c) for c in cells] + [expect]) + "\n")
    with open(metrics_file, "w") as f:
        f.write(f"p50 {p50:.1f}\np99 {p99:.1f}\nrequests {n}\nstale {cache.get('stale', 0)}\n")

def table(summary_file):
    rows = [line.split("\t") for line in open(summary_file).read().split("\n") if line]
    width = max([len("load")] + [len(r[0]) for r in rows])
    print(f"{'load':<{width}} " + " ".join(f"{name:>{w}}" for name, w in COLUMNS) + "  expected")
    for r in rows:
        print(f"{r[0]:<{width}} " + " ".join(f"{cell:>{w}}" for cell, (_, w) in zip(r[1:-1], COLUMNS)) + f"  {r[-1]}")

def member(name, count, first_expiry_days):
    """PUT /_fake/members body: `count` ACTIVE buckets of 10 points, the first expiring
    `first_expiry_days` from today (UTC), one more day for each next one."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    buckets = [{"id": f"lopb_bench_{i}", "points": 10, "status": "ACTIVE",
                "expires_at": (today + datetime.timedelta(days=int(first_expiry_days) + i)).isoformat(),
                "created_at": "2025-01-01T00:00:00Z"} for i in range(int(count))]
    print(json.dumps({"campaign": CAMPAIGN, "member": name, "buckets": buckets}))

def stat(stats_file, key):
    print(json.load(open(stats_file))[key])

CAMPAIGN, RPC = sys.argv[1], sys.argv[2]
globals()[sys.argv[3].replace("-", "_")](*sys.argv[4:])
PY
py() { python3 "$WORK/shield.py" "$CAMPAIGN" "$RPC_PATH" "$@"; }

# --- the fake ---------------------------------------------------------------------------------
# fake METHOD PATH [JSON]: a control call; a refusal is a set-up failure.
fake() {
  local args=(-sS -f --max-time 5 -X "$1" "$FAKE_URL/_fake/$2")
  [ $# -ge 3 ] && args+=(-H 'content-type: application/json' --data-binary "$3")
  curl "${args[@]}" > /dev/null || die "the fake refused $1 /_fake/$2 ${3:-}"
}
fake_stats() { curl -sS -f --max-time 5 "$FAKE_URL/_fake/stats" > "$1" || die "the fake's stats did not answer"; }

# Waits until the fake saw no new call for ~0.6 s (at most ~10 s): background refreshes and reads
# that outlive their callers end up in the stats.
settle() {
  local last=-1 quiet=0 calls
  for _ in $(seq 1 50); do
    fake_stats "$WORK/settle.json"
    calls="$(py stat "$WORK/settle.json" calls)"
    if [ "$calls" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
    [ "$quiet" -ge 3 ] && return 0
    last="$calls"
    sleep 0.2
  done
}

# --- the fleet --------------------------------------------------------------------------------
redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$WORK" --logfile "$WORK/redis.log" &
children+=($!)
wait_for_port "$redis_port"

stop_fleet() {
  for pid in "${fleet_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${fleet_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  fleet_pids=()
}

# Waits for /readyz 200 several times (two workers share the port; either may answer).
wait_ready() {
  local yes=0
  for _ in $(seq 1 200); do
    [ "$(curl -s --http2-prior-knowledge --max-time 1 -o /dev/null -w '%{http_code}' "$1/readyz" || true)" = 200 ] && yes=$((yes + 1))
    [ "$yes" -ge 4 ] && return 0
    sleep 0.05
  done
  die "$1/readyz never answered 200"
}

# start_fleet NAME [fake arguments…] -- [service VAR=value…]: a fresh fake and two fresh replicas
# on an empty Redis. Sets FAKE_URL and REPLICAS (base URLs).
start_fleet() {
  local name="$1"; shift
  local fake_args=() service_env=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do fake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  service_env=("$@")
  stop_fleet
  redis-cli -h 127.0.0.1 -p "$redis_port" FLUSHALL > /dev/null || die "redis-cli FLUSHALL failed"
  local port
  port="$(free_port)"
  "$BIN/fake-voucherify" --host 127.0.0.1 --port "$port" --app-id "$APP_ID" --app-token "$APP_TOKEN" \
    --rate-limit "$UNLIMITED" "${fake_args[@]}" > "$WORK/$name-fake.log" 2>&1 &
  fleet_pids+=($!)
  wait_for_port "$port"
  FAKE_URL="http://127.0.0.1:$port"
  REPLICAS=()
  for replica in 1 2; do
    port="$(free_port)"
    env LISTEN="127.0.0.1:$port" WORKERS=2 LOG_LEVEL=warning REDIS_URL="redis://127.0.0.1:$redis_port" \
      VOUCHERIFY_API_URL="$FAKE_URL" VOUCHERIFY_APP_ID="$APP_ID" VOUCHERIFY_APP_TOKEN="$APP_TOKEN" \
      "${service_env[@]}" "$BIN/points-expiry" serve > "$WORK/$name-replica$replica.log" 2>&1 &
    fleet_pids+=($!)
    wait_for_port "$port"
    REPLICAS+=("http://127.0.0.1:$port")
  done
  for url in "${REPLICAS[@]}"; do wait_ready "$url"; done
}

# --- load -------------------------------------------------------------------------------------
# members FIRST COUNT [TIMES]: prints the generated codes FIRST…FIRST+COUNT-1 (the list TIMES over).
members() {
  awk -v first="$1" -v count="$2" -v times="${3:-1}" \
    'BEGIN { for (t = 0; t < times; t++) for (i = first; i < first + count; i++) printf "MEMBER-%06d\n", i }'
}
# repeat MEMBER TIMES: prints MEMBER TIMES times.
repeat() { awk -v member="$1" -v times="$2" 'BEGIN { for (i = 0; i < times; i++) print member }'; }

# fire RESULTS CONCURRENCY MEMBERS_FILE [DEADLINE]: one request per line of MEMBERS_FILE, spread
# over the replicas, in waves of CONCURRENCY (several curl processes above 250), no wave starting
# at or after DEADLINE (an $EPOCHREALTIME); appends one line per request sent to RESULTS: HTTP
# status, seconds, x-cache, retry-after (tab-separated).
# Waves, because curl 7.88 fails an h2c (prior knowledge) transfer it adds to a connection it
# already has ("Error in the HTTP2 framing layer"): so a curl process never gets more transfers
# than it starts at once, each on its own connection (--parallel-immediate).
fire() {
  local results="$1" prefix wave parts part pid
  prefix="$(mktemp -u "$WORK/load.XXXXXX")"
  py plan "$prefix" "$2" "$3" "${REPLICAS[@]}" > "$prefix.plan"
  while read -r wave parts; do
    if [ -n "${4:-}" ] && past "$4"; then break; fi
    load_pids=()
    for part in $(seq 0 $((parts - 1))); do
      # Bounded twice: every request by --max-time, the process by timeout (which passes a TERM
      # on to curl). curl 7.88 draws its parallel progress meter despite -s: --no-progress-meter.
      timeout --kill-after=5 $((REQUEST_TIMEOUT + 10)) \
        curl -s --no-progress-meter --http2-prior-knowledge -Z --parallel-immediate --parallel-max 250 \
        --max-time "$REQUEST_TIMEOUT" -w '%{http_code}\t%{time_total}\t%header{x-cache}\t%header{retry-after}\n' \
        -K "$prefix.$wave.$part.cfg" > "$prefix.$wave.$part.out" &
      load_pids+=($!)
    done
    # curl exits non-zero when a transfer failed; that is a number to report, not a set-up failure.
    for pid in "${load_pids[@]}"; do wait "$pid" || true; done
    load_pids=()
  done < "$prefix.plan"
  cat "$prefix".*.out >> "$results"
}

# report LABEL EXPECTED RESULTS PLANNED SECONDS [no-upstream]: prints a load's numbers and adds its
# summary line (LABEL "-": a set-up load, one line). Upstream numbers are the fake's stats now.
report() {
  local stats=-
  if [ "${6:-}" != no-upstream ]; then stats="$WORK/stats.json"; fake_stats "$stats"; fi
  py report "$1" "$2" "$3" "$4" "$5" "$stats" "$WORK/summary.tsv" "$WORK/metrics"
}
# elapsed START: seconds since START (an $EPOCHREALTIME), e.g. 1.23
elapsed() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.2f", now - start }'; }
# past INSTANT: whether the clock is at or past INSTANT (an $EPOCHREALTIME)
past() { awk -v instant="$1" -v now="$EPOCHREALTIME" 'BEGIN { exit !(now >= instant) }'; }
metric() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/metrics"; }

# load LABEL EXPECTED CONCURRENCY MEMBERS_FILE: fresh upstream stats, the load, its aftermath
# (settle), the report. The common case; scenarios 5 and 7, which interleave loads, call the pieces.
load() {
  local results started took
  results="$(mktemp "$WORK/results.XXXXXX")"
  fake POST stats/reset
  started=$EPOCHREALTIME
  fire "$results" "$3" "$4"
  took="$(elapsed "$started")"
  settle
  report "$1" "$2" "$results" "$(wc -l < "$4")" "$took"
}

heading() { printf '\n== %s\n' "$*"; }

# sleep_until START SECONDS: sleeps until SECONDS after START (an $EPOCHREALTIME).
sleep_until() {
  sleep "$(awk -v start="$1" -v wait="$2" -v now="$EPOCHREALTIME" 'BEGIN { w = start + wait - now; printf "%.3f", (w > 0 ? w : 0) }')"
}

# fill MEMBERS_FILE: reads every listed member once to cache it (a set-up load: one line, no
# summary row).
fill() {
  load - - "$FILL_CONCURRENCY" "$1"
}

# --- scenarios --------------------------------------------------------------------------------
scenario_1() {
  start_fleet s1 --latency-ms 300 --members 10
  heading "1  single-flight: $SINGLE_FLIGHT_REQUESTS concurrent callers, one uncached member, fake 300 ms"
  repeat MEMBER-000001 "$SINGLE_FLIGHT_REQUESTS" > "$WORK/s1a"
  load "1 single-flight, 1 page" "1 read" "$SINGLE_FLIGHT_REQUESTS" "$WORK/s1a"
  heading "1  the same for a 3-page member (250 buckets)"
  fake PUT members "$(py member PAGES-1 250 30)"
  repeat PAGES-1 "$SINGLE_FLIGHT_REQUESTS" > "$WORK/s1b"
  load "1 single-flight, 3 pages" "1 read per page (3)" "$SINGLE_FLIGHT_REQUESTS" "$WORK/s1b"
}

scenario_2() {
  start_fleet s2 --latency-ms 300 --members 10
  heading "2  thundering herd: $HERD_REQUESTS concurrent callers, one uncached member, fake 300 ms"
  repeat MEMBER-000001 "$HERD_REQUESTS" > "$WORK/s2"
  load "2 herd" "1 read" "$HERD_REQUESTS" "$WORK/s2"
}

scenario_3() {
  members 1 "$EXPIRING_MEMBERS" > "$WORK/s3"
  # The hit-path reference runs on its own fleet with the default TTL: with a TTL of 2 s the
  # entries of the first fill waves are past fresh before the fill ends. Same members, same load.
  start_fleet s3-ref --members "$EXPIRING_MEMBERS"
  heading "3  hit-path reference for the next load (own fleet, default TTL): $EXPIRING_MEMBERS cached members, each once, $EXPIRING_CONCURRENCY at a time"
  fill "$WORK/s3"
  load "3 hit reference" "all hit" "$EXPIRING_CONCURRENCY" "$WORK/s3"
  local hit_p50 filled
  hit_p50="$(metric p50)"
  start_fleet s3 --members "$EXPIRING_MEMBERS" -- CACHE_TTL_SECONDS=2
  heading "3  $EXPIRING_MEMBERS entries expiring at once (CACHE_TTL_SECONDS=2, default stale windows): fill, wait past fresh, each member ${EXPIRING_READS}x, $EXPIRING_CONCURRENCY at a time"
  fill "$WORK/s3"
  filled=$EPOCHREALTIME
  # Fresh ends at most CACHE_TTL_SECONDS after the last fill (jitter only shortens it).
  sleep_until "$filled" 2.3
  members 1 "$EXPIRING_MEMBERS" "$EXPIRING_READS" > "$WORK/s3b"
  load "3 expiring at once" "all stale, 1 read/member" "$EXPIRING_CONCURRENCY" "$WORK/s3b"
  echo "   stale share $(awk -v s="$(metric stale)" -v n="$(metric requests)" 'BEGIN { printf "%.1f%%", (n ? 100 * s / n : 0) }');" \
       "p50 $(metric p50) ms vs hit-path p50 $hit_p50 ms (x$(awk -v a="$(metric p50)" -v b="$hit_p50" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'))"
}

# scenario_4_part MODE LABEL FAIL_JSON
scenario_4_part() {
  # Stale-while-revalidate off: past fresh, only stale-if-error may answer from the cache.
  start_fleet "s4-$1" --members "$OUTAGE_MEMBERS" -- CACHE_TTL_SECONDS=1 CACHE_STALE_WHILE_REVALIDATE_SECONDS=0
  heading "4  $2 a second after $OUTAGE_MEMBERS entries expired (TTL 1 s, SWR 0): $OUTAGE_REQUESTS requests over them"
  members 1 "$OUTAGE_MEMBERS" > "$WORK/s4-fill"
  fill "$WORK/s4-fill"
  sleep 2
  fake POST fail "$3"
  members 1 "$OUTAGE_MEMBERS" $(( (OUTAGE_REQUESTS + OUTAGE_MEMBERS - 1) / OUTAGE_MEMBERS )) > "$WORK/s4"
  load "4 $1" "all stale, few calls" 250 "$WORK/s4"
}

scenario_4() {
  scenario_4_part 503 "Voucherify answering 503" '{"mode":"status","status":503}'
  scenario_4_part drop "Voucherify dropping connections" '{"mode":"drop"}'
}

scenario_5() {
  # SWR off so the cached member's stale answer shows the pause counts as "cannot be asked".
  start_fleet s5 --members 1000 -- CACHE_TTL_SECONDS=1 CACHE_STALE_WHILE_REVALIDATE_SECONDS=0
  heading "5  one 429 with Retry-After 20, then ${RATE_LIMIT_SECONDS} s of uncached members over both replicas (TTL 1 s, SWR 0)"
  local cached=MEMBER-000001 uncached="$WORK/s5.uncached" stale="$WORK/s5.cached" next=2 started took deadline
  : > "$uncached"; : > "$stale"
  repeat "$cached" 1 > "$WORK/s5-fill"
  fill "$WORK/s5-fill"
  sleep 2
  fake POST fail '{"mode":"rate_limit","retry_after":20,"count":1}'
  fake POST stats/reset
  # The first uncached member alone, so that it meets the 429; then waves of 10 new members
  # (each asked once) and the cached member once per replica, 0.25 s apart.
  started=$EPOCHREALTIME
  deadline="$(awk -v s="$started" -v d="$RATE_LIMIT_SECONDS" 'BEGIN { printf "%.3f", s + d }')"
  members "$next" 1 > "$WORK/s5-wave"
  fire "$uncached" 1 "$WORK/s5-wave"
  next=$((next + 1))
  while ! past "$deadline"; do
    members "$next" 10 > "$WORK/s5-wave"
    fire "$uncached" 10 "$WORK/s5-wave"
    repeat "$cached" 2 > "$WORK/s5-wave"
    fire "$stale" 2 "$WORK/s5-wave"
    next=$((next + 10))
    sleep 0.25
  done
  took="$(elapsed "$started")"
  settle
  echo "   -- uncached: MEMBER-000002…$(printf 'MEMBER-%06d' $((next - 1))), each asked once"
  report "5 429: uncached members" "1 call; 429 + retry-after" "$uncached" "$(wc -l < "$uncached")" "$took"
  echo "   -- $cached, cached before and past fresh, once per replica each wave"
  report "5 429: cached member" "stale" "$stale" "$(wc -l < "$stale")" "$took" no-upstream
}

scenario_6() {
  start_fleet s6 --members 10
  heading "6  unknown member: $NOT_FOUND_REQUESTS concurrent callers"
  repeat NOPE-BENCH "$NOT_FOUND_REQUESTS" > "$WORK/s6"
  load "6 unknown member" "1 call, all 404" "$NOT_FOUND_REQUESTS" "$WORK/s6"
}

scenario_7() {
  local interactive=500
  start_fleet s7 --members $((BUDGET_MEMBERS + interactive)) --rate-limit 2000 --rate-limit-window 60 --enforce-rate-limit \
    -- VOUCHERIFY_RATE_LIMIT=2000/min VOUCHERIFY_INTERACTIVE_RESERVE=0.5
  heading "7  rate budget: fake enforces 2,000 calls/60 s, VOUCHERIFY_RATE_LIMIT=2000/min; $BUDGET_MEMBERS uncached members, $BUDGET_CONCURRENCY at a time"
  echo "   WarmMembers does not exist yet: the bulk load uses GetMemberExpiration (so it is interactive too)"
  local bulk="$WORK/s7.bulk" trickle="$WORK/s7.trickle" started took trickle_pid
  : > "$bulk"; : > "$trickle"
  members 1 "$BUDGET_MEMBERS" > "$WORK/s7-bulk"
  fake POST stats/reset
  # The trickle: interactive requests one at a time, 0.25 s apart, for members the bulk load never asks for.
  (
    trap 'kill "${load_pids[@]}" 2>/dev/null; exit 143' TERM   # its own curl, if one is running
    next=$((BUDGET_MEMBERS + 1))
    while [ ! -e "$WORK/s7.stop" ] && [ "$next" -le $((BUDGET_MEMBERS + interactive)) ]; do
      members "$next" 1 > "$WORK/s7-one"
      fire "$trickle" 1 "$WORK/s7-one"
      next=$((next + 1))
      sleep 0.25
    done
  ) &
  trickle_pid=$!
  fleet_pids+=($trickle_pid)
  started=$EPOCHREALTIME
  # The deadline keeps the run bounded: no bulk wave starts BUDGET_SECONDS after the first.
  fire "$bulk" "$BUDGET_CONCURRENCY" "$WORK/s7-bulk" "$(awk -v s="$started" -v d="$BUDGET_SECONDS" 'BEGIN { printf "%.3f", s + d }')"
  took="$(elapsed "$started")"
  touch "$WORK/s7.stop"
  wait "$trickle_pid" || true
  unset 'fleet_pids[-1]'   # the trickle, started last, has ended
  settle
  if [ "$(wc -l < "$bulk")" -lt "$BUDGET_MEMBERS" ]; then
    echo "   bulk cut after ${BUDGET_SECONDS} s: $(wc -l < "$bulk") of $BUDGET_MEMBERS members requested"
  fi
  echo "   budget never exceeded = rate_limited 0 and max_in_window <= 2000 (upstream below: bulk and trickle together)"
  echo "   -- bulk: distinct uncached members, $BUDGET_CONCURRENCY at a time"
  report "7 budget: bulk" "rate_limited 0, max_in_window<=2000" "$bulk" "$BUDGET_MEMBERS" "$took"
  echo "   -- interactive trickle: other members, one at a time 0.25 s apart while the bulk load ran"
  report "7 budget: trickle" "answered while bulk runs" "$trickle" "$(wc -l < "$trickle")" "$took" no-upstream
}

scenario_8() {
  start_fleet s8 --members 10
  heading "8  midnight: the only bucket expired yesterday, the nightly job has not run; $MIDNIGHT_REQUESTS requests, 4 at a time"
  fake PUT members "$(py member MIDNIGHT-1 1 -1)"
  repeat MIDNIGHT-1 "$MIDNIGHT_REQUESTS" > "$WORK/s8"
  load "8 midnight" "1 read" 4 "$WORK/s8"
}

# --- run --------------------------------------------------------------------------------------
note "scenarios $SCENARIOS; logs and results in $WORK (removed at exit)"
: > "$WORK/summary.tsv"
run_started=$SECONDS
for scenario in 1 2 3 4 5 6 7 8; do
  wants "$scenario" || continue
  "scenario_$scenario"
done
stop_fleet

echo
echo "== summary ($((SECONDS - run_started)) s; ok/hit/miss/stale: 200s by x-cache; 404 not_found, 429 resource_exhausted," \
     "503 unavailable, 504 deadline_exceeded, 500 internal, other: anything else incl. no answer; latency as curl saw it)"
py table "$WORK/summary.tsv"
