@testable import HTTPServer
import PointsExpiryServer
import RPC
import Testing
import Voucherify

/// `/metrics` as the registry renders it: every family with HELP and TYPE, and each report
/// landing in its series.
@Suite struct MetricsTests {
    /// The value of one series (`name{labels}`), or nil when it is not rendered.
    private func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    @Test func everyFamilyHasHelpAndType() throws {
        let metrics = Metrics(workers: 2, circuitBreaker: CircuitBreaker(), serverStats: HTTPServerStats())
        _ = metrics.method("GetMemberExpiration")
        _ = metrics.endpoint("/healthz")
        let text = metrics.render()
        var families: Set<String> = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var name = String(line.prefix { $0 != "{" && $0 != " " })
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && text.contains("# TYPE \(name.dropLast(suffix.count)) histogram") {
                name = String(name.dropLast(suffix.count))
            }
            families.insert(name)
        }
        for family in families {
            #expect(text.contains("# HELP \(family) "), "\(family) has no HELP")
            #expect(text.contains("# TYPE \(family) "), "\(family) has no TYPE")
        }
        for family in ["points_expiry_requests_total", "points_expiry_request_duration_seconds", "points_expiry_cache_results_total",
                       "points_expiry_upstream_calls_total", "points_expiry_upstream_call_duration_seconds", "points_expiry_single_flight_joins_total",
                       "points_expiry_rate_budget_grants_total", "points_expiry_rate_budget_waits_total", "points_expiry_rate_budget_tokens",
                       "points_expiry_redis_command_errors_total", "points_expiry_redis_command_timeouts_total",
                       "points_expiry_redis_command_duration_seconds", "points_expiry_redis_connected", "points_expiry_open_connections",
                       "points_expiry_open_streams", "points_expiry_rejected_requests_total", "points_expiry_webhook_events_total",
                       "points_expiry_build_info", "points_expiry_upstream_circuit_state"] {
            #expect(families.contains(family), "\(family) is missing")
        }
        #expect(value(text, #"points_expiry_build_info{version="\#(BuildInfo.version)"}"#) == 1)
    }

    @Test func requestsCountByMethodProtocolAndCodeOverEveryWorkersRouter() throws {
        let metrics = Metrics()
        // Two workers' routers resolve the same method: one series.
        let first = metrics.method("GetMemberExpiration")
        let second = metrics.method("GetMemberExpiration")
        first.answered(over: .grpc, .rpc(.notFound), seconds: 0.002)
        second.answered(over: .grpc, .rpc(.notFound), seconds: 0.004)
        second.answered(over: .connect, .rpc(nil), seconds: 0.0003)
        first.answered(over: .http, .http(status: 415), seconds: 0.0001)
        first.answered(over: .connect, .rpc(.resourceExhausted), seconds: nil)
        let readyz = metrics.endpoint("/readyz")
        readyz.answered(over: .http, .http(status: 503), seconds: 0.01)
        readyz.answered(over: .http, .http(status: 418), seconds: 0.01)
        metrics.unknownRoute.answered(over: .grpcWeb, .rpc(.unimplemented), seconds: 0.001)
        let text = metrics.render()
        let requests = "points_expiry_requests_total"
        #expect(value(text, #"\#(requests){method="GetMemberExpiration",protocol="grpc",code="not_found"}"#) == 2)
        #expect(value(text, #"\#(requests){method="GetMemberExpiration",protocol="connect",code="ok"}"#) == 1)
        #expect(value(text, #"\#(requests){method="GetMemberExpiration",protocol="http",code="415"}"#) == 1)
        #expect(value(text, #"\#(requests){method="GetMemberExpiration",protocol="connect",code="resource_exhausted"}"#) == 1)
        #expect(value(text, #"\#(requests){method="GetMemberExpiration",protocol="grpc_web",code="ok"}"#) == 0)
        #expect(value(text, #"\#(requests){method="/readyz",protocol="http",code="503"}"#) == 1)
        #expect(value(text, #"\#(requests){method="/readyz",protocol="http",code="other"}"#) == 1)
        #expect(value(text, #"\#(requests){method="unknown",protocol="grpc_web",code="unimplemented"}"#) == 1)
        // A request the server refused before the router timed it has no duration.
        let histogram = "points_expiry_request_duration_seconds"
        #expect(value(text, #"\#(histogram)_count{method="GetMemberExpiration"}"#) == 4)
        #expect(value(text, #"\#(histogram)_bucket{method="GetMemberExpiration",le="0.0005"}"#) == 2)
        #expect(value(text, #"\#(histogram)_bucket{method="GetMemberExpiration",le="0.0025"}"#) == 3)
        #expect(value(text, #"\#(histogram)_bucket{method="GetMemberExpiration",le="+Inf"}"#) == 4)
    }

    @Test func redisUpstreamAndWhatOthersCountAreRendered() throws {
        let stats = HTTPServerStats()
        let metrics = Metrics(workers: 2, serverStats: stats)
        metrics.redisCommandFinished(.ok, seconds: 0.0002)
        metrics.redisCommandFinished(.error, seconds: 0.001)
        metrics.redisCommandFinished(.timeout, seconds: 0.5)
        metrics.setRedisConnected(worker: 1, true)
        metrics.setRedisConnected(worker: 7, true) // no such worker: ignored
        metrics.upstreamCallFinished(.rateLimited, milliseconds: 250)
        metrics.upstreamCallFinished(.ok, milliseconds: -3) // a clock step never records a negative duration
        metrics.refused(.methodNotAllowed)
        metrics.cacheResults.increment("hit")
        metrics.cacheResults.increment("bogus")
        stats.connectionOpened()
        stats.connectionOpened()
        stats.streamOpened()
        stats.refused(.abuse)
        stats.acceptFailed()
        for _ in 0..<2 { // rendering twice must not add the sources' counts twice
            let text = metrics.render()
            #expect(value(text, "points_expiry_redis_command_errors_total") == 1)
            #expect(value(text, "points_expiry_redis_command_timeouts_total") == 1)
            #expect(value(text, "points_expiry_redis_command_duration_seconds_count") == 3)
            #expect(value(text, #"points_expiry_redis_connected{worker="0"}"#) == 0)
            #expect(value(text, #"points_expiry_redis_connected{worker="1"}"#) == 1)
            #expect(value(text, #"points_expiry_redis_connected{worker="7"}"#) == nil)
            #expect(value(text, #"points_expiry_upstream_calls_total{outcome="429"}"#) == 1)
            #expect(value(text, "points_expiry_upstream_call_duration_seconds_sum") == 0.25)
            #expect(value(text, #"points_expiry_rejected_requests_total{reason="method_not_allowed"}"#) == 1)
            #expect(value(text, #"points_expiry_rejected_requests_total{reason="abuse"}"#) == 1)
            #expect(value(text, #"points_expiry_rejected_requests_total{reason="connection_limit"}"#) == 0)
            #expect(value(text, "points_expiry_accept_failures_total") == 1)
            #expect(value(text, "points_expiry_open_connections") == 2)
            #expect(value(text, "points_expiry_open_streams") == 1)
            #expect(value(text, #"points_expiry_cache_results_total{result="hit"}"#) == 1)
            #expect(value(text, #"points_expiry_cache_results_total{result="other"}"#) == 1)
        }
        stats.connectionClosed()
        #expect(value(metrics.render(), "points_expiry_open_connections") == 1)
    }
}
