#!/usr/bin/env bash
# Runs every test: unit tests of the pure core and adapters, and integration tests that start a
# real redis-server, the fake Voucherify and the service, and call it over HTTP/2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_packages
ensure_python_clients
cd "$ROOT"
swift build --build-tests
swift test --skip-build --disable-xctest "$@"
