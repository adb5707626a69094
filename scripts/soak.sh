#!/usr/bin/env bash
# A soak run (not in CI): the release service (WORKERS=1), Redis and the fake with 1,000 members,
# under SOAK_SECONDS (default 120) of mixed load, all bounded by that duration:
#   - h2c Connect GETs of 200 members (misses first, then hits), 4 clients × 50 req/s;
#   - HTTP/1.1 probes and scrapes (/readyz, /metrics), 2 clients × 10 req/s;
#   - abusive clients: slowloris HTTP/1.1 headers (a byte a second), webhook bodies announced
#     at 512 KiB and never finished, and connections opened and dropped at once.
# Prints the service's RSS, open fds and the p99 of the RPC calls at the start, the middle and
# the end (and RSS and fds once the clients are gone), and fails when those are far past the start's. CPU pinning as in bench.sh
# (SERVER_CPU, LOAD_CPU, REDIS_CPU).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_packages
cd "$ROOT"
SOAK_SECONDS=${SOAK_SECONDS:-120}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1} REDIS_CPU=${REDIS_CPU:-1}
[ "$SOAK_SECONDS" -ge 6 ] || { echo "SOAK_SECONDS must be at least 6" >&2; exit 2; }

begin_run soak
build_release
start_hit_path_stack 1000
base="http://127.0.0.1:$service_port"

# Connect GET URLs of MEMBER-000001..MEMBER-000200 (h2load cycles through them).
python3 - "$base" > "$WORK/rpc-urls" <<'PYTHON'
import json, sys, urllib.parse
for n in range(1, 201):
    message = json.dumps({"campaign": "camp_fake_loyalty", "member": f"MEMBER-{n:06d}"}, separators=(",", ":"))
    print(f"{sys.argv[1]}/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration?encoding=json&message={urllib.parse.quote(message)}")
PYTHON

# sample LABEL: one line of the service's RSS and open fds now.
sample() {
  local rss fds
  rss="$(awk '/^VmRSS/ { print $2 }' "/proc/$service_pid/status")"
  fds="$(find "/proc/$service_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
  printf '%s\t%s\t%s\n' "$1" "$rss" "$fds" >> "$WORK/samples"
}

sample start
"${pin_load[@]}" h2load -D "$SOAK_SECONDS" -c 4 -t 1 -m 8 --rps 50 --log-file "$WORK/rpc.tsv" \
  $(cat "$WORK/rpc-urls") > "$WORK/h2load-rpc.log" 2>&1 &
children+=($!)
rpc_load=$!
"${pin_load[@]}" h2load --h1 -D "$SOAK_SECONDS" -c 2 -t 1 --rps 10 "$base/readyz" "$base/metrics" \
  > "$WORK/h2load-probes.log" 2>&1 &
children+=($!)
probe_load=$!
"${pin_load[@]}" python3 - "$service_port" "$SOAK_SECONDS" > "$WORK/abuse.log" 2>&1 <<'PYTHON' &
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + seconds

def connect(first_bytes):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(first_bytes)
    return s

slow = "GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Padding: " + "a" * 4000 + "\r\n\r\n"
webhook = (b"POST /webhooks/voucherify HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
           b"Content-Length: 524288\r\n\r\n" + b"{" + b" " * 8191)
slowloris = []   # [socket, next byte index]
unfinished = []
opened = dropped = reconnects = 0
while time.monotonic() < deadline:
    while len(slowloris) < 20:
        try:
            slowloris.append([connect(slow[:1].encode()), 1]); opened += 1
        except OSError:
            reconnects += 1; break
    while len(unfinished) < 20:
        try:
            unfinished.append(connect(webhook)); opened += 1
        except OSError:
            reconnects += 1; break
    for entry in list(slowloris):
        try:
            entry[0].sendall(slow[entry[1]].encode()); entry[1] = (entry[1] + 1) % len(slow)
        except OSError:
            entry[0].close(); slowloris.remove(entry); dropped += 1
    for s in list(unfinished):
        try:
            s.setblocking(False)
            if s.recv(4096) == b"":
                raise OSError("closed")
        except BlockingIOError:
            pass
        except OSError:
            s.close(); unfinished.remove(s); dropped += 1
    for _ in range(10):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close(); opened += 1
        except OSError:
            reconnects += 1
    time.sleep(1)
print(f"abusive clients: {opened} connections opened, {dropped} closed by the service, {reconnects} failed connects")
PYTHON
children+=($!)
abuse=$!

sleep $((SOAK_SECONDS / 2))
sample middle
sleep $((SOAK_SECONDS - SOAK_SECONDS / 2 - 1))
sample end
wait "$rpc_load" "$probe_load" "$abuse"
# Once every client has gone: what the load left behind.
sample after

echo "soak: ${SOAK_SECONDS}s against points-expiry (pid $service_pid, WORKERS=1)"
cat "$WORK/abuse.log"
grep -E '^(requests|status codes):' "$WORK/h2load-rpc.log" | sed 's/^/rpc    /'
grep -E '^(requests|status codes):' "$WORK/h2load-probes.log" | sed 's/^/probes /'
python3 - "$WORK/samples" "$WORK/rpc.tsv" "$SOAK_SECONDS" <<'PYTHON'
import sys
samples = [line.split("\t") for line in open(sys.argv[1]).read().split("\n") if line]
calls = [tuple(int(field) for field in line.split("\t")) for line in open(sys.argv[2]) if line.strip()]
calls.sort()
seconds = float(sys.argv[3])
first = calls[0][0] if calls else 0
# The RPC calls that started in the first, middle and last tenth of the run.
windows = {"start": (0.0, 0.1), "middle": (0.45, 0.55), "end": (0.9, 1.0), "after": (1.0, 1.0)}
print(f"{'':8}{'RSS MiB':>9}{'fds':>6}{'calls':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}")
for label, rss_kib, fds in samples:
    low, high = windows[label]
    durations = sorted(d for start, status, d in calls
                       if low * seconds <= (start - first) / 1e6 < high * seconds)
    bad = sum(1 for start, status, d in calls
              if low * seconds <= (start - first) / 1e6 < high * seconds and status != 200)
    def pct(p):
        return durations[min(len(durations) - 1, int(p * len(durations)))] / 1000 if durations else float("nan")
    print(f"{label:8}{int(rss_kib) / 1024:9.1f}{fds:>6}{len(durations):8}{pct(0.50):9.2f}{pct(0.99):9.2f}{bad:9}")
start_rss, end_rss = int(samples[0][1]), int(samples[-1][1])
start_fds, end_fds = int(samples[0][2]), int(samples[-1][2])  # "after": the clients are gone
# Loose bounds: a leak over minutes shows as a multiple, while caches warming and the abusive
# clients' connections (at most ~50 open at once) account for the rest.
if end_rss > 4 * start_rss + 64 * 1024 or end_fds > start_fds + 200:
    print(f"soak: FAILED: RSS {start_rss} → {end_rss} KiB, fds {start_fds} → {end_fds}")
    sys.exit(1)
PYTHON
kill -0 "$service_pid" || { echo "soak: the service died" >&2; exit 1; }
