import Foundation
import Testing
import TestSupport
import PointsExpiryServer
import Voucherify

/// The built `points-expiry` binary: its command line, start-up validation, logs and graceful shutdown.
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
        ("LOG_FORMAT", "xml"),
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

    @Test func versionPrintsTheNameAndVersion() throws {
        let child = try ChildProcess(BuiltProducts.path("points-expiry"), ["--version"])
        #expect(try child.waitForExit() == 0)
        #expect(child.outputText == "points-expiry \(BuildInfo.version)\n")
    }

    /// Every variable of the contract's "Running it" table, with its default, in `serve --help`;
    /// the secrets as environment-only.
    @Test func serveHelpShowsEveryVariableAndItsDefault() throws {
        let child = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve", "--help"], environment: ["COLUMNS": "1000"])
        #expect(try child.waitForExit() == 0)
        let help = child.outputText
        let defaults = [
            "LISTEN": "127.0.0.1:8080", "WORKERS": "the number of cores", "REDIS_URL": "redis://127.0.0.1:6379",
            "VOUCHERIFY_API_URL": "https://api.voucherify.io", "VOUCHERIFY_PROJECT_TIMEZONE": "UTC",
            "VOUCHERIFY_RATE_LIMIT": "only Voucherify's headers limit", "VOUCHERIFY_INTERACTIVE_RESERVE": "0.5",
            "CACHE_TTL_SECONDS": "300", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "60", "CACHE_STALE_IF_ERROR_SECONDS": "3600",
            "CACHE_NOT_FOUND_SECONDS": "60", "EXPORT_REFRESH_SECONDS": "3600", "WEBHOOK_SECRET": "none",
            "TLS_CERT_FILE": "none", "TLS_KEY_FILE": "none", "LOG_LEVEL": "info", "LOG_FORMAT": "text when stderr is a terminal, else json",
        ]
        for (variable, value) in defaults {
            let line = help.split(separator: "\n").first { $0.contains(variable) }
            #expect(line?.contains("default \(value)") == true || line?.contains("default: \(value)") == true,
                    "\(variable) default \(value): \(line.map(String.init) ?? "missing")")
        }
        let secrets = help.split(separator: "\n").first { $0.contains("VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN") }
        #expect(secrets != nil, "\(help)")
        #expect(help.contains("never as flags"))
        #expect(!help.contains("--webhook-secret") && !help.contains("--voucherify-app-token") && !help.contains("--voucherify-app-id"))
        #expect(help.contains("--log-format"))
    }

    /// Off a terminal the logs are JSON by default, one object per line with the fixed fields;
    /// and at the most verbose level, through upstream calls, upstream failures and webhooks
    /// (signed and not), neither the Voucherify token nor the webhook secret is ever written.
    @Test func logsAreJSONOffATerminalAndNeverCarryASecret() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        let fake = try FakeVoucherify()
        defer {
            fake.stop()
            redis.stop()
        }
        let secret = "whsec-never-logged-4711"
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: [
            "LISTEN": "127.0.0.1:0", "WORKERS": "1", "REDIS_URL": redis.url, "VOUCHERIFY_API_URL": fake.baseURL,
            "VOUCHERIFY_APP_ID": FakeVoucherify.appID, "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken,
            "WEBHOOK_SECRET": secret, "LOG_LEVEL": "trace", "LOG_FORMAT": "",
        ])
        defer { service.stop() }
        let listening = try service.waitForLine(containing: "points-expiry listening")
        let listen = try #require(Self.jsonObject(listening)?["listen"] as? String, "\(listening)")
        let baseURL = "http://\(listen)"
        try waitUntil("the service's /readyz answers 200", interval: 0.05) {
            (try? CurlClient.request("GET", baseURL + "/readyz"))?.status == 200
        }
        func get(_ member: String) throws -> HTTPResult {
            try CurlClient.request("POST", baseURL + ServiceUnderTest.rpc, body: Data(#"{"campaign":"\#(FakeVoucherify.campaignID)","member":"\#(member)"}"#.utf8),
                                   headers: ["content-type: application/json"])
        }
        #expect(try get("MEMBER-000001").status == 200)
        try fake.fail(["mode": "status", "status": 401, "count": 1])
        #expect(try get("MEMBER-000002").status != 200)
        let envelope = Array(pointsExpiredEnvelope(member: "MEMBER-000001").utf8)
        let signature = WebhookSigner(secret: secret).signature(of: WebhookPayload.removingWhitespace(envelope))
        let signed = try CurlClient.request("POST", baseURL + ServiceUnderTest.webhookPath, body: Data(envelope),
                                            headers: ["content-type: application/json", "x-voucherify-signature: \(signature)"])
        #expect(signed.status == 200, "\(signed.text)")
        let forged = try CurlClient.request("POST", baseURL + ServiceUnderTest.webhookPath, body: Data(envelope),
                                            headers: ["content-type: application/json", "x-voucherify-signature: \(secret)"])
        #expect(forged.status == 401, "\(forged.text)")
        service.signal(SIGTERM)
        #expect(try service.waitForExit() == 0)

        let lines = service.outputText.split(separator: "\n")
        #expect(lines.count >= 3)
        for line in lines {
            let object = Self.jsonObject(line)
            #expect(object != nil, "not one JSON object: \(line)")
            for field in ["timestamp", "level", "logger", "message", "source"] {
                #expect(object?[field] is String, "no \(field) in \(line)")
            }
        }
        #expect(!service.outputText.contains(FakeVoucherify.appToken))
        #expect(!service.outputText.contains(secret))
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

    private static func jsonObject(_ line: some StringProtocol) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}
