# Shared by the scripts in this folder: Debian packages and a few helpers. Source it; don't run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Build and test needs: C libraries (-dev), Redis, HTTP/2 clients and the reference server.
DEBIAN_PACKAGES=(pkg-config libnghttp2-dev libcurl4-openssl-dev libhiredis-dev libevent-dev zlib1g-dev libssl-dev libjemalloc-dev
                 redis-server redis-tools nghttp2-client nghttp2-server curl tzdata procps)

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

# Prints a TCP port that was free on 127.0.0.1 a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (up to ~10 s).
wait_for_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing is listening on 127.0.0.1:$1" >&2
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
