#!/usr/bin/env bash
# Runs the service locally. Without VOUCHERIFY_APP_ID/VOUCHERIFY_APP_TOKEN it starts the fake
# Voucherify (1,000 generated members, plus the campaign and cards of proto-json/examples) on
# loopback port FAKE_VOUCHERIFY_PORT (default 8090), delivering its webhooks to the service; without
# REDIS_URL it starts a loopback redis-server on a free port; without WEBHOOK_SECRET it uses a
# development secret. Everything it starts stops with it (Ctrl-C).
#
# It refuses to start when a port it needs is taken (another run.sh, say), naming the port and the
# setting that moves it: two stacks answering on one port with different Redis data is worse than
# none. Arguments go to `serve`; a --listen among them moves the service, and the fake's webhooks
# follow it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_packages
cd "$ROOT"

# The service's address as serve reads it: a --listen flag wins over LISTEN.
listen="${LISTEN:-127.0.0.1:8080}"
arguments=("$@")
for ((i = 0; i < ${#arguments[@]}; i++)); do
  case "${arguments[i]}" in
    --listen) listen="${arguments[i + 1]:-}" ;;
    --listen=*) listen="${arguments[i]#--listen=}" ;;
  esac
done
service_host="${listen%:*}"
service_port="${listen##*:}"
fake_port="${FAKE_VOUCHERIFY_PORT:-8090}"
start_fake=0
if [ -z "${VOUCHERIFY_APP_ID:-}" ] || [ -z "${VOUCHERIFY_APP_TOKEN:-}" ]; then start_fake=1; fi

# refuse_taken HOST PORT WHAT HOW: stops here when HOST:PORT is taken.
refuse_taken() {
  port_in_use "$1" "$2" || return 0
  local holder
  holder="$(port_holder "$2")"
  echo "scripts/run.sh: port $2 ($3) is already in use${holder:+ by: $holder}" >&2
  echo "  Another scripts/run.sh may be running: stop it, or $4." >&2
  exit 2
}
# Checked before the build (fail fast) and again just before starting, as a build takes a while.
check_ports() {
  refuse_taken "${service_host:-0.0.0.0}" "$service_port" "the service, $listen" \
    "move the service: scripts/run.sh --listen 127.0.0.1:$((service_port + 1)) (or LISTEN=...)"
  if [ "$start_fake" -eq 1 ]; then
    refuse_taken 127.0.0.1 "$fake_port" "the fake Voucherify" \
      "move the fake: FAKE_VOUCHERIFY_PORT=$((fake_port + 1)) scripts/run.sh"
  fi
}
check_ports

swift build -c release --product points-expiry
swift build -c release --product fake-voucherify
BIN="$(swift build -c release --show-bin-path)"
STATE="$ROOT/run"
mkdir -p "$STATE"
children=()
cleanup() { for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
check_ports

if [ -z "${REDIS_URL:-}" ]; then
  port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$STATE" \
    --logfile "$STATE/redis.log" &
  children+=($!)
  # Its own listener, not just anything on the port: free_port's answer can be taken meanwhile.
  wait_for_own_listener "${children[-1]}" "$port" "redis-server (log: run/redis.log)" || exit 2
  export REDIS_URL="redis://127.0.0.1:$port"
  echo "started redis-server on 127.0.0.1:$port (log: run/redis.log)" >&2
fi

if [ -z "${WEBHOOK_SECRET:-}" ]; then
  export WEBHOOK_SECRET=dev-webhook-secret
  echo "WEBHOOK_SECRET not set: using the development secret \"$WEBHOOK_SECRET\"" >&2
fi

if [ "$start_fake" -eq 1 ]; then
  # The fake signs its webhooks with the exported WEBHOOK_SECRET (read from its environment) and
  # delivers them where the service listens (a wildcard address is reached on loopback).
  webhook_host="$service_host"
  case "$webhook_host" in 0.0.0.0|"[::]"|"") webhook_host=127.0.0.1 ;; esac
  "$BIN/fake-voucherify" --host 127.0.0.1 --port "$fake_port" --members 1000 --contract-examples --app-id dev-app-id --app-token dev-app-token \
    --webhook-url "http://$webhook_host:$service_port/webhooks/voucherify" \
    > "$STATE/fake-voucherify.log" 2>&1 &
  children+=($!)
  wait_for_own_listener "${children[-1]}" "$fake_port" "fake-voucherify (log: run/fake-voucherify.log)" || exit 2
  export VOUCHERIFY_API_URL="http://127.0.0.1:$fake_port" VOUCHERIFY_APP_ID=dev-app-id VOUCHERIFY_APP_TOKEN=dev-app-token
  echo "started fake-voucherify on 127.0.0.1:$fake_port (members MEMBER-000001..MEMBER-001000, campaign camp_fake_loyalty / \"Fake Loyalty\"; and proto-json/examples' LC-7F3K-92QD in camp_Fk3vWgzXK2yCmZ1aQmLp7TnR), webhooks to $webhook_host:$service_port" >&2
fi

"$BIN/points-expiry" serve "$@" &
children+=($!)
wait "${children[-1]}"
