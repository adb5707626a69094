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

    @Test func sigtermDrainsInFlightRequestsThenExits() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        let fake = try FakeVoucherify()
        defer {
            fake.stop()
            redis.stop()
        }
        try fake.fail(["mode": "slow", "latency_ms": 700, "count": 1])
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: [
            "LISTEN": "127.0.0.1:0", "WORKERS": "2", "REDIS_URL": redis.url, "VOUCHERIFY_API_URL": fake.baseURL,
            "VOUCHERIFY_APP_ID": FakeVoucherify.appID, "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken, "LOG_LEVEL": "info",
        ])
        defer { service.stop() }
        let port = try listeningPort(of: service)
        let inFlight = try ChildProcess("/usr/bin/curl", [
            "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
            "-H", "content-type: application/json", "-d", #"{"campaign":"\#(FakeVoucherify.campaignID)","member":"MEMBER-000001"}"#,
            "http://127.0.0.1:\(port)/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration",
        ])
        defer { inFlight.stop() }
        Thread.sleep(forTimeInterval: 0.3)
        service.signal(SIGTERM)
        #expect(try inFlight.waitForExit() == 0)
        #expect(inFlight.outputText == "200")
        #expect(try service.waitForExit() == 0)
        #expect(service.outputText.contains("stopped"))
    }

    /// The port from the "listening" log line (`listen=127.0.0.1:PORT`): the binary was started
    /// with port 0, so only it knows which port it got.
    private func listeningPort(of service: ChildProcess) throws -> Int {
        let line = try service.waitForLine(containing: "points-expiry listening")
        guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("listen=") }),
              let port = field.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw TestFailure("no listen=HOST:PORT in \(line)")
        }
        return port
    }
}
