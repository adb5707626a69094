#!/usr/bin/env bash
# Runs the service locally. Without VOUCHERIFY_APP_ID/VOUCHERIFY_APP_TOKEN it starts the fake
# Voucherify (1,000 generated members, plus the campaign and cards of proto-json/examples) on
# loopback, delivering its webhooks to the service; without REDIS_URL it starts a loopback
# redis-server; without WEBHOOK_SECRET it uses a development secret. Everything it starts stops
# with it (Ctrl-C).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_packages
cd "$ROOT"
swift build -c release --product points-expiry
swift build -c release --product fake-voucherify
BIN="$(swift build -c release --show-bin-path)"
STATE="$ROOT/run"
mkdir -p "$STATE"
children=()
cleanup() { for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ -z "${REDIS_URL:-}" ]; then
  port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$STATE" \
    --logfile "$STATE/redis.log" &
  children+=($!)
  wait_for_port "$port"
  export REDIS_URL="redis://127.0.0.1:$port"
  echo "started redis-server on 127.0.0.1:$port (log: run/redis.log)" >&2
fi

if [ -z "${WEBHOOK_SECRET:-}" ]; then
  export WEBHOOK_SECRET=dev-webhook-secret
  echo "WEBHOOK_SECRET not set: using the development secret \"$WEBHOOK_SECRET\"" >&2
fi

if [ -z "${VOUCHERIFY_APP_ID:-}" ] || [ -z "${VOUCHERIFY_APP_TOKEN:-}" ]; then
  # The fake signs its webhooks with the exported WEBHOOK_SECRET (read from its environment).
  port="${FAKE_VOUCHERIFY_PORT:-8090}"
  listen="${LISTEN:-127.0.0.1:8080}"
  service_host="${listen%:*}"
  case "$service_host" in 0.0.0.0|"[::]"|"") service_host=127.0.0.1 ;; esac
  "$BIN/fake-voucherify" --host 127.0.0.1 --port "$port" --members 1000 --contract-examples --app-id dev-app-id --app-token dev-app-token \
    --webhook-url "http://$service_host:${listen##*:}/webhooks/voucherify" \
    > "$STATE/fake-voucherify.log" 2>&1 &
  children+=($!)
  wait_for_port "$port"
  export VOUCHERIFY_API_URL="http://127.0.0.1:$port" VOUCHERIFY_APP_ID=dev-app-id VOUCHERIFY_APP_TOKEN=dev-app-token
  echo "started fake-voucherify on 127.0.0.1:$port (members MEMBER-000001..MEMBER-001000, campaign camp_fake_loyalty / \"Fake Loyalty\"; and proto-json/examples' LC-7F3K-92QD in camp_Fk3vWgzXK2yCmZ1aQmLp7TnR)" >&2
fi

"$BIN/points-expiry" serve "$@" &
children+=($!)
wait "${children[-1]}"
