# Shared by the scripts in this folder: Debian packages and a few helpers. Source it; don't run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Build and test needs: C libraries (-dev), Redis, HTTP/2 clients and the reference server.
DEBIAN_PACKAGES=(pkg-config libnghttp2-dev libcurl4-openssl-dev libhiredis-dev libevent-dev zlib1g-dev libssl-dev libjemalloc-dev
                 libhttp-parser-dev redis-server redis-tools nghttp2-client nghttp2-server curl openssl tzdata procps iproute2 binutils python3-venv)

# The Python clients the interop tests call the service with (Tests/clients/), with everything they
# pull in pinned (pip freeze), so that a new release on PyPI cannot change what the tests prove.
PYTHON_CLIENT_PACKAGES=(grpcio==1.85.3 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 connectrpc==0.13.0
                        protobuf==7.36.2 protobuf-py==0.7.0 protobuf-py-ext==0.7.0 protobuf-py-pure==0.7.0 pyqwest==0.12.0
                        opentelemetry-api==1.45.2 typing_extensions==4.16.0 prometheus_client==0.26.0)
PYTHON_CLIENTS_VENV="$ROOT/.build-py/venv"

# Installs whichever of DEBIAN_PACKAGES are missing (apt-get; sudo when not root).
ensure_packages() {
  local missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Creates $PYTHON_CLIENTS_VENV with PYTHON_CLIENT_PACKAGES unless it already holds exactly them
# (the venv remembers what it was built with in pinned.txt).
ensure_python_clients() {
  local pinned="$PYTHON_CLIENTS_VENV/pinned.txt"
  local wanted
  # The interpreter is part of the stamp: a venv is bound to the Python that made it.
  wanted="$(python3 --version; printf '%s\n' "${PYTHON_CLIENT_PACKAGES[@]}")"
  [ -f "$pinned" ] && [ "$(cat "$pinned")" = "$wanted" ] && return 0
  echo "installing Python clients into ${PYTHON_CLIENTS_VENV#"$ROOT/"}: ${PYTHON_CLIENT_PACKAGES[*]}" >&2
  rm -rf "$PYTHON_CLIENTS_VENV"
  python3 -m venv "$PYTHON_CLIENTS_VENV"
  "$PYTHON_CLIENTS_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "${PYTHON_CLIENT_PACKAGES[@]}"
  printf '%s\n' "$wanted" > "$pinned"
}

# Prints a TCP port that was free on 127.0.0.1 a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# True when HOST:PORT ($1, $2) cannot be bound because something listens there (on that address
# or on the wildcard). SO_REUSEADDR as servers set it, so connections lingering in TIME_WAIT do not
# count; other bind failures (an address not on this machine) are left for the program to report.
port_in_use() {
  python3 - "$1" "$2" <<'PYTHON'
import errno, socket, sys
host, port = sys.argv[1].strip("[]"), sys.argv[2]
if not port.isdigit():
    sys.exit(1)
port = int(port)
probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    probe.bind((host, port))
except OSError as error:
    sys.exit(0 if error.errno == errno.EADDRINUSE else 1)
sys.exit(1)
PYTHON
}

# Who listens on TCP port $1, as ss shows it (the process only when it is ours or we are root).
port_holder() {
  ss -Hltnp "sport = :$1" 2>/dev/null | awk '{ $1 = $2 = $3 = ""; print }' | sed 's/^ *//' | sort -u | head -n 3
}

# Waits until process $1 listens on TCP port $2 (up to ~10 s); fails naming $3 (what it is) if the
# process exits first or something else holds the port.
wait_for_own_listener() {
  local pid=$1 port=$2 what=$3
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "$what exited instead of listening on port $port" >&2; return 1; }
    ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid," && return 0
    sleep 0.1
  done
  echo "$what is not listening on port $port after 10 s; it is held by: $(port_holder "$port")" >&2
  return 1
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (up to $2 seconds, default 10).
wait_for_port() {
  for _ in $(seq 1 $(( ${2:-10} * 10 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing is listening on 127.0.0.1:$1 after ${2:-10} s" >&2
  return 1
}

# A benchmark's last step (from its EXIT trap): kills and reaps the PIDs given, shows the tail of
# every log in $WORK when the run failed, and removes $WORK. Usage: finish_run NAME STATUS PID...
finish_run() {
  local name=$1 status=$2
  shift 2
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "$name: failed (exit $status); logs:" >&2
    for log in "$WORK"/*.log; do [ -f "$log" ] && { echo "== $log" >&2; tail -n 20 "$log" >&2; }; done
  fi
  rm -rf "$WORK"
}

# Builds the service and the fake in release mode (SCRATCH_PATH: swift build --scratch-path) and
# sets BIN to the folder that holds them.
build_release() {
  local scratch=()
  [ -n "${SCRATCH_PATH:-}" ] && scratch=(--scratch-path "$SCRATCH_PATH")
  swift build -c release "${scratch[@]}" --product points-expiry
  swift build -c release "${scratch[@]}" --product fake-voucherify
  BIN="$(swift build -c release "${scratch[@]}" --show-bin-path)"
}

# The hit-path benchmarks' request (bench.sh, profile-hit.sh): one member of the fake's campaign.
HIT_PATH="/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"
HIT_REQUEST='{"campaign":"camp_fake_loyalty","member":"MEMBER-000001"}'

# Writes HIT_REQUEST as the benchmarks send it: $WORK/request.json (Connect JSON) and
# $WORK/request.grpc (one binary gRPC message: campaign = field 1, member = field 2, both strings,
# behind the 5-byte length prefix); sets hit_query to the Connect GET query of the same request.
write_hit_requests() {
  printf '%s' "$HIT_REQUEST" > "$WORK/request.json"
  hit_query="encoding=json&message=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$HIT_REQUEST")"
  python3 - "$WORK/request.grpc" "$HIT_REQUEST" <<'PY'
import json, sys
request = json.loads(sys.argv[2])
def field(number, text):
    data = text.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data
message = field(1, request["campaign"]) + field(2, request["member"])
open(sys.argv[1], "wb").write(b"\0" + len(message).to_bytes(4, "big") + message)
PY
}

# Sets load_args to h2load's arguments for $2 hit requests of kind $1 over CONNECTIONS connections
# of STREAMS streams: POST (Connect JSON over h2c), GET (Connect GET: the caller puts ?$hit_query
# on the URL), GRPC (binary gRPC) or H1 (Connect JSON over HTTP/1.1 keep-alive, one request at a
# time per connection).
hit_load_args() {
  load_args=(-n "$2" -c "$CONNECTIONS" -m "$STREAMS" -t 1)
  case "$1" in
    POST) load_args+=(-d "$WORK/request.json" -H 'content-type: application/json') ;;
    GET) ;;
    GRPC) load_args+=(-d "$WORK/request.grpc" -H 'content-type: application/grpc' -H 'te: trailers') ;;
    H1) load_args=(--h1 -n "$2" -c "$CONNECTIONS" -m 1 -t 1 -d "$WORK/request.json" -H 'content-type: application/json') ;;
    *) echo "no such load: $1 (POST, GET, GRPC or H1)" >&2; return 1 ;;
  esac
}

# For the hit-path benchmarks: sets the taskset prefixes pin_server, pin_load and pin_redis from
# SERVER_CPU, LOAD_CPU and REDIS_CPU (0, 1 and 1 unless set; empty on a single CPU), then starts redis-server (on
# pin_redis), the fake with $1 members and the service with WORKERS=1 (start_service). Appends
# their PIDs to `children` and sets redis_port, fake_port, service_port and service_pid. Extra
# arguments for the fake come from the array `fake_arguments` (default: none).
start_hit_path_stack() {
  : "${SERVER_CPU:=0}" "${LOAD_CPU:=1}" "${REDIS_CPU:=1}"
  pin_server=(taskset -c "$SERVER_CPU")
  pin_load=(taskset -c "$LOAD_CPU")
  pin_redis=(taskset -c "$REDIS_CPU")
  if [ "$(nproc)" -lt 2 ]; then
    echo "only one CPU, running unpinned" >&2
    pin_server=() pin_load=() pin_redis=()
  fi
  # Redis is on the hit path (every lookup is an HGET); it shares the load generator's core so
  # that the server under test has its core to itself.
  redis_port="$(free_port)"
  "${pin_redis[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" &
  children+=($!)
  wait_for_port "$redis_port"
  fake_port="$(free_port)"
  "$BIN/fake-voucherify" --host 127.0.0.1 --port "$fake_port" --members "$1" \
    --app-id bench-app-id --app-token bench-app-token --rate-limit 1000000 "${fake_arguments[@]}" > "$WORK/fake-voucherify.log" 2>&1 &
  children+=($!)
  wait_for_port "$fake_port"
  start_service 1
}

# Starts one more service process with $1 worker threads against the stack's Redis and fake,
# prefixed by the array `pin_service` (default: pin_server), logging to
# $WORK/points-expiry-$1.log; appends its PID to `children` and sets service_port and
# service_pid. The array `service_command` (default: the built service) may put a profiler in
# front of it.
start_service() {
  local workers=$1 pin=("${pin_server[@]}")
  declare -p pin_service &> /dev/null && pin=("${pin_service[@]}")
  # Under a profiler the service starts (and answers) many times slower.
  local command=("$BIN/points-expiry") start_seconds=10
  declare -p service_command &> /dev/null && command=("${service_command[@]}") start_seconds=120
  service_port="$(free_port)"
  env LISTEN="127.0.0.1:$service_port" WORKERS="$workers" LOG_LEVEL=warning CACHE_TTL_SECONDS=3600 \
    REDIS_URL="redis://127.0.0.1:$redis_port" VOUCHERIFY_API_URL="http://127.0.0.1:$fake_port" \
    VOUCHERIFY_APP_ID=bench-app-id VOUCHERIFY_APP_TOKEN=bench-app-token \
    "${pin[@]}" "${command[@]}" serve > "$WORK/points-expiry-$workers.log" 2>&1 &
  service_pid=$!   # env, taskset and valgrind exec the program, so this is the service's own PID
  children+=($service_pid)
  wait_for_port "$service_port" "$start_seconds"
}

# Starts a benchmark run: creates $WORK and an empty `children`, and on exit (or INT/TERM) stops
# every PID in `children` and cleans up through finish_run NAME.
begin_run() {
  RUN_NAME=$1
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/points-expiry-$1.XXXXXX")"
  children=()
  trap 'status=$?; trap - EXIT INT TERM; finish_run "$RUN_NAME" "$status" "${children[@]}"; exit "$status"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
