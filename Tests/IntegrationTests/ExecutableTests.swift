import Foundation
import Testing

/// The built `points-expiry` binary: start-up validation and graceful shutdown.
@Suite(.serialized) struct ExecutableTests {
    private static let valid = [
        "LISTEN": "127.0.0.1:0", "WORKERS": "1", "REDIS_URL": "redis://127.0.0.1:1",
        "VOUCHERIFY_APP_ID": "id", "VOUCHERIFY_APP_TOKEN": "token-value",
    ]

    @Test(arguments: [
        ("VOUCHERIFY_APP_ID", ""),
        ("VOUCHERIFY_APP_TOKEN", ""),
        ("VOUCHERIFY_PROJECT_TIMEZONE", "Mars/Olympus_Mons"),
        ("REDIS_URL", "http://localhost"),
        ("REDIS_URL", "redis://no-such-host.invalid:6379"),
        ("VOUCHERIFY_API_URL", "ftp://api.voucherify.io"),
        ("LISTEN", "no-port"),
        ("WORKERS", "0"),
        ("CACHE_TTL_SECONDS", "ten"),
        ("CACHE_STALE_IF_ERROR_SECONDS", "-1"),
        ("VOUCHERIFY_RATE_LIMIT", "lots/min"),
        ("VOUCHERIFY_INTERACTIVE_RESERVE", "1.5"),
        ("LOG_LEVEL", "loud"),
    ])
    func badConfigurationStopsStartupWithOneLineNamingTheVariable(variable: String, value: String) throws {
        let child = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"],
                                     environment: Self.valid.merging([variable: value]) { _, new in new })
        #expect(try child.waitForExit() == 2)
        let lines = child.outputText.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains(variable) == true)
        #expect(!child.outputText.contains("token-value"))
    }

    /// SIGTERM while a request waits on Voucherify: the request is still answered, then the
    /// process exits 0.
    @Test func sigtermDrainsInFlightRequestsThenExits() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        let fake = try FakeVoucherify()
        defer {
            fake.stop()
            redis.stop()
        }
        // The fake holds its answer far longer than the test needs to send SIGTERM, so the request
        // is surely in flight when the drain starts (checked below, not assumed).
        try fake.fail(["mode": "slow", "latency_ms": 3000, "count": 1])
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: [
            "LISTEN": "127.0.0.1:0", "WORKERS": "1", "REDIS_URL": redis.url, "VOUCHERIFY_API_URL": fake.baseURL,
            "VOUCHERIFY_APP_ID": FakeVoucherify.appID, "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken, "LOG_LEVEL": "info",
        ])
        defer { service.stop() }
        let baseURL = "http://127.0.0.1:\(try ServiceProcess.listeningPort(of: service))"
        // One worker: a 200 from /readyz (a PING over its Redis connection) covers every worker.
        try waitUntil("the service's /readyz answers 200", interval: 0.05) {
            (try? CurlClient.request("GET", baseURL + "/readyz"))?.status == 200
        }
        let inFlight = try ChildProcess("/usr/bin/curl", [
            "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--max-time", "60",
            "-H", "content-type: application/json", "-d", #"{"campaign":"\#(FakeVoucherify.campaignID)","member":"MEMBER-000001"}"#,
            baseURL + ServiceUnderTest.rpc,
        ])
        defer { inFlight.stop() }
        try waitUntil("the fake received the upstream call") { try fake.totalCalls() == 1 }
        service.signal(SIGTERM)
        _ = try service.waitForLine(containing: "stopping")
        #expect(inFlight.isRunning, "the request should still be waiting on Voucherify when the drain starts")
        #expect(try inFlight.waitForExit() == 0)
        #expect(inFlight.outputText == "200")
        #expect(try service.waitForExit() == 0)
        #expect(service.outputText.contains("stopped"))
    }
}
