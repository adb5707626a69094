import Foundation
import Testing
import TestSupport

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

    @Test func aBadTLSKeyStopsStartupNamingTLSKeyFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate(in: directory, name: "a")
        let key = directory + "/bad-key.pem"
        #expect(FileManager.default.createFile(atPath: key, contents: Data("not a key\n".utf8)))
        let child = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: Self.valid.merging([
            "TLS_CERT_FILE": certificate.certificateFile, "TLS_KEY_FILE": key,
        ]) { _, new in new })
        #expect(try child.waitForExit() == 2)
        let lines = child.outputText.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains("TLS_KEY_FILE") == true)
    }

    /// TLS on the port, SIGHUP to a renewed certificate, and a bad file on a later SIGHUP keeping
    /// the certificate in use.
    @Test func sighupReloadsTheTLSCertificate() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let a = try TestCertificate(in: directory, name: "a")
        let b = try TestCertificate(in: directory, name: "b")
        let certificateFile = directory + "/tls.crt"
        let keyFile = directory + "/tls.key"
        func install(_ certificate: String, _ key: String) throws {
            try Data(contentsOf: URL(fileURLWithPath: certificate)).write(to: URL(fileURLWithPath: certificateFile), options: .atomic)
            try Data(contentsOf: URL(fileURLWithPath: key)).write(to: URL(fileURLWithPath: keyFile), options: .atomic)
        }
        try install(a.certificateFile, a.keyFile)
        // /healthz needs neither Redis nor Voucherify.
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: Self.valid.merging([
            "TLS_CERT_FILE": certificateFile, "TLS_KEY_FILE": keyFile, "LOG_LEVEL": "info",
        ]) { _, new in new })
        defer { service.stop() }
        let url = "https://127.0.0.1:\(try ServiceProcess.listeningPort(of: service))/healthz"
        func healthz(trusting certificate: TestCertificate) throws -> String {
            let curl = try ChildProcess("/usr/bin/curl", ["-sS", "--max-time", "20", "--http2", "--cacert", certificate.certificateFile,
                                                          "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url])
            _ = try curl.waitForExit()
            return curl.outputText
        }
        #expect(try healthz(trusting: a) == "2 200")

        try install(b.certificateFile, b.keyFile)
        service.signal(SIGHUP)
        _ = try service.waitForLine(containing: "reloaded TLS certificate")
        #expect(try healthz(trusting: b) == "2 200")
        #expect(try healthz(trusting: a) != "2 200")

        try install(a.certificateFile, b.keyFile)
        service.signal(SIGHUP)
        _ = try service.waitForLine(containing: "keeping the old one")
        #expect(try healthz(trusting: b) == "2 200")
        service.signal(SIGTERM)
        #expect(try service.waitForExit() == 0)
    }
}
