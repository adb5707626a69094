#!/usr/bin/env bash
# Runs every test: unit tests of the pure core and adapters, and integration tests that start a
# real redis-server, the fake Voucherify and the service, and call it over HTTP/2; and
# scripts/check-docker.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_packages
ensure_python_clients
cd "$ROOT"
swift build --build-tests
# What can be checked of docker/ without a Docker engine (packages against Package.swift and ldd).
scripts/check-docker.sh "$(swift build --show-bin-path)"
swift test --skip-build --disable-xctest "$@"
