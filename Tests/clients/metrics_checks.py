"""Scrapes the service's /metrics as Prometheus would and reads it with prometheus_client's own
parser: every family has HELP and TYPE, the contract's families are there, and after the calls
the test made (--member read at least --requests times over Connect, one 415) the values are
sane. Exits non-zero at the first check that fails."""

import argparse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from client_checks import expect, run

# Counters are named here without `_total`, as the parser names their families.
CONTRACT_FAMILIES = {
    "points_expiry_requests": "counter",
    "points_expiry_request_duration_seconds": "histogram",
    "points_expiry_cache_results": "counter",
    "points_expiry_upstream_calls": "counter",
    "points_expiry_upstream_call_duration_seconds": "histogram",
    "points_expiry_single_flight_joins": "counter",
    "points_expiry_rate_budget_grants": "counter",
    "points_expiry_rate_budget_waits": "counter",
    "points_expiry_rate_budget_tokens": "gauge",
    "points_expiry_redis_command_errors": "counter",
    "points_expiry_redis_command_timeouts": "counter",
    "points_expiry_redis_command_duration_seconds": "histogram",
    "points_expiry_redis_connected": "gauge",
    "points_expiry_open_connections": "gauge",
    "points_expiry_open_streams": "gauge",
    "points_expiry_rejected_requests": "counter",
    "points_expiry_webhook_events": "counter",
    "points_expiry_build_info": "gauge",
    "points_expiry_upstream_circuit_state": "gauge",
}


def sample(families, name: str, **labels) -> float:
    """The value of the one sample `name` with exactly `labels`; fails when there is none."""
    for family in families.values():
        for each in family.samples:
            if each.name == name and each.labels == labels:
                return each.value
    expect(False, f"{name}{labels} is exposed")
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="host:port of the service")
    parser.add_argument("--requests", type=int, required=True, help="Connect JSON GetMemberExpiration calls answered ok so far")
    args = parser.parse_args()

    def checks() -> None:
        with urllib.request.urlopen(f"http://{args.address}/metrics", timeout=10) as response:
            expect(response.status == 200, "GET /metrics is 200", str(response.status))
            text = response.read().decode()
        families = {family.name: family for family in text_string_to_metric_families(text)}
        print(f"ok /metrics parses: {len(families)} families")

        for family in families.values():
            expect(family.documentation != "", f"{family.name} has HELP")
            expect(family.type in ("counter", "gauge", "histogram"), f"{family.name} has TYPE", family.type)
        declared = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
        for name in declared:
            expect(f"# HELP {name} " in text, f"{name} has a HELP line")
        print(f"ok every family has HELP and TYPE ({len(declared)} TYPE lines)")

        for name, kind in CONTRACT_FAMILIES.items():
            expect(name in families, f"{name} is exposed")
            expect(families[name].type == kind, f"{name} is a {kind}", families[name].type)
        print(f"ok the contract's {len(CONTRACT_FAMILIES)} families are there")

        method = "GetMemberExpiration"
        ok = sample(families, "points_expiry_requests_total", method=method, protocol="connect", code="ok")
        expect(ok >= args.requests, f"{method} counted {args.requests}+ ok Connect calls", str(ok))
        unsupported = sample(families, "points_expiry_requests_total", method=method, protocol="http", code="415")
        expect(unsupported >= 1, "the 415 is counted by method", str(unsupported))
        refused = sample(families, "points_expiry_rejected_requests_total", reason="unsupported_media_type")
        expect(refused >= 1, "the 415 is counted as rejected", str(refused))

        count = sample(families, "points_expiry_request_duration_seconds_count", method=method)
        expect(count >= ok, f"{method}'s durations count its calls", f"{count} < {ok}")
        buckets = sorted((float(each.labels["le"]), each.value) for each in families["points_expiry_request_duration_seconds"].samples
                         if each.name.endswith("_bucket") and each.labels["method"] == method)
        expect(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "histogram buckets only grow", str(buckets))
        expect(buckets[-1] == (float("inf"), count), "the +Inf bucket holds every call", str(buckets[-1]))
        expect(sample(families, "points_expiry_request_duration_seconds_sum", method=method) > 0, "durations add up to more than 0")
        print(f"ok {method}: {ok:.0f} ok, durations in {len(buckets)} buckets")

        expect(sample(families, "points_expiry_cache_results_total", result="miss") >= 1, "a miss is counted")
        expect(sample(families, "points_expiry_cache_results_total", result="hit") >= 1, "a hit is counted")
        expect(sample(families, "points_expiry_upstream_calls_total", outcome="ok") >= 1, "the miss's Voucherify call is counted")
        expect(sample(families, "points_expiry_upstream_call_duration_seconds_count") >= 1, "the Voucherify call is timed")
        expect(sample(families, "points_expiry_redis_command_errors_total") >= 0, "Redis errors are a count")
        expect(sample(families, "points_expiry_redis_command_duration_seconds_count") >= 1, "Redis commands are timed")
        ready = sum(each.value for each in families["points_expiry_redis_connected"].samples)
        expect(ready >= 1, "a worker's Redis connection is ready", str(ready))
        # Gauges the servers keep (HTTPServerStats): never below zero, a stream always on a connection.
        connections = sample(families, "points_expiry_open_connections")
        streams = sample(families, "points_expiry_open_streams")
        expect(connections >= 0 and streams >= 0 and (streams == 0 or connections >= 1), "open connections and streams are sane",
               f"{connections} connections, {streams} streams")
        build = [each for each in families["points_expiry_build_info"].samples]
        expect(len(build) == 1 and build[0].value == 1 and build[0].labels.get("version"), "build_info is 1 with a version", str(build))
        closed = sample(families, "points_expiry_upstream_circuit_state", state="closed")
        expect(closed == 1, "the circuit is closed", str(closed))
        print("ok cache, upstream, connections, build info and circuit values are sane")

    run(checks)


if __name__ == "__main__":
    main()
