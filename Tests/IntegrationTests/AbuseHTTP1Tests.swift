import Foundation
import Testing
import TestSupport

/// The built `points-expiry` binary under HTTP/1.1 and listener abuse: descriptor exhaustion,
/// unfinished bodies, an idle probe at shutdown, HEAD. Each asserts its bound (CPU, log lines,
/// RSS, time) and that another client is served meanwhile.
@Suite(.serialized) struct AbuseHTTP1Tests {
    /// accept() failing with EMFILE pauses accepting with back-off: no spinning core, one log line
    /// for the episode, open connections still served, and accepting resumes once descriptors
    /// are free again.
    @Test func runningOutOfDescriptorsPausesAcceptingQuietly() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        defer { redis.stop() }
        let limit = 64
        let service = try ChildProcess("/usr/bin/prlimit", ["--nofile=\(limit):\(limit)", "--", BuiltProducts.path("points-expiry"), "serve"],
                                       environment: Self.environment(redis))
        defer { service.stop() }
        let port = try ServiceProcess.listeningPort(of: service)
        let pid = service.process.processIdentifier
        try waitUntil("/readyz answers 200") { (try? CurlClient.request("GET", "http://127.0.0.1:\(port)/readyz", http2: false))?.status == 200 }
        let keptAlive = try RawTCPClient(port: port)
        #expect(try Self.healthz(on: keptAlive))

        let used = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        // Enough to use every descriptor left, and more waiting in the backlog.
        var flood = try (0..<(limit - used + 16)).map { _ in try RawTCPClient(port: port) }
        _ = try service.waitForLine(containing: "accepting connections failed")
        let cpuBefore = try Self.cpuTicks(pid)
        let window = ContinuousClock.now
        // The measurement window itself: a spinning accept loop would burn all of it.
        Thread.sleep(forTimeInterval: 2)
        let cpu = Double(try Self.cpuTicks(pid) - cpuBefore) / Double(sysconf(Int32(_SC_CLK_TCK)))
        let elapsed = Double((ContinuousClock.now - window).components.seconds)
        #expect(cpu < 0.3 * max(elapsed, 2), "CPU \(cpu) s in \(elapsed) s while accept() fails")
        #expect(try Self.healthz(on: keptAlive), "a connection already open is served meanwhile")

        flood.removeAll()
        try waitUntil("a new connection is served again") {
            (try? CurlClient.request("GET", "http://127.0.0.1:\(port)/healthz", http2: false, timeoutSeconds: 5))?.status == 200
        }
        _ = try service.waitForLine(containing: "accepting connections again")
        let failures = service.outputText.split(separator: "\n").filter { $0.contains("accepting connections failed") }
        #expect(failures.count == 1)
    }

    /// Bodies declared and never finished, over many connections: what is buffered stays within
    /// the worker's request-byte budget (32 MiB) instead of growing with every connection.
    @Test func unfinishedBodiesOverManyConnectionsKeepMemoryBounded() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        defer { redis.stop() }
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"],
                                       environment: Self.environment(redis).merging(["WEBHOOK_SECRET": "abuse-test-secret"]) { _, new in new })
        defer { service.stop() }
        let port = try ServiceProcess.listeningPort(of: service)
        let pid = service.process.processIdentifier
        try waitUntil("/readyz answers 200") { (try? CurlClient.request("GET", "http://127.0.0.1:\(port)/readyz", http2: false))?.status == 200 }
        let rssBefore = try Self.residentBytes(pid)
        let declared = 1_000_000
        let head = Array("POST /webhooks/voucherify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(declared)\r\n\r\n".utf8)
        let body = [UInt8](repeating: UInt8(ascii: " "), count: declared - 1)
        // 160 bodies of ~1 MB held unfinished would be 160 MB; the budget holds 32 MiB.
        let attackers = try (0..<160).map { _ in
            let attacker = try RawTCPClient(port: port)
            // A refused one may be closed before all of its body is sent: that is fine.
            _ = attacker.send(head) && attacker.send(body)
            return attacker
        }
        // Bodies may take 31 of the 32 MiB (1 MiB is kept for headers): 32 of them fit at most, the
        // rest are answered 503 at their head.
        var refused = 0
        try waitUntil("the bodies past the budget are refused") {
            refused += attackers.filter { $0.readAvailable().hasPrefix("HTTP/1.1 503") }.count
            return refused >= 160 - 32
        }
        #expect(try CurlClient.request("GET", "http://127.0.0.1:\(port)/healthz", http2: false).status == 200,
                "another client is served meanwhile")
        let growth = try Self.residentBytes(pid) - rssBefore
        #expect(growth < 64 << 20, "RSS grew by \(growth >> 20) MiB")
        withExtendedLifetime(attackers) {}
    }

    /// An idle TCP probe and an idle keep-alive connection close at once on SIGTERM: the process
    /// does not wait out its 10 s drain for them.
    @Test func idleConnectionsDoNotHoldShutdown() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        defer { redis.stop() }
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: Self.environment(redis, workers: 2))
        defer { service.stop() }
        let port = try ServiceProcess.listeningPort(of: service)
        try waitUntil("/readyz answers 200") { (try? CurlClient.request("GET", "http://127.0.0.1:\(port)/readyz", http2: false))?.status == 200 }
        let probes = try (0..<4).map { _ in try RawTCPClient(port: port) }
        let keptAlive = try RawTCPClient(port: port)
        #expect(try Self.healthz(on: keptAlive))
        let signalled = ContinuousClock.now
        service.signal(SIGTERM)
        #expect(try service.waitForExit(timeout: 30) == 0)
        // The drain allows 10 s; idle connections must not use it (generous slack for a slow machine).
        #expect(ContinuousClock.now - signalled < .seconds(6))
        withExtendedLifetime(probes) {}
    }

    @Test func headAnsweredWith405CarriesNoBody() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        defer { redis.stop() }
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: Self.environment(redis))
        defer { service.stop() }
        let port = try ServiceProcess.listeningPort(of: service)
        let client = try RawTCPClient(port: port)
        // A body after the 405's head would be read as the start of the next answer.
        #expect(client.send(Array("HEAD \(ServiceUnderTest.rpc) HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        let answers = try client.readUntil("ok\n")
        #expect(answers.hasPrefix("HTTP/1.1 405 "))
        let second = answers.range(of: "\r\n\r\n").map { answers[$0.upperBound...] } ?? ""
        #expect(second.hasPrefix("HTTP/1.1 200 OK\r\n"))
        // HEAD of a GET endpoint is its GET without the body: over HTTP/1.1 the next answer follows
        // its head at once; over HTTP/2 curl would fail on DATA after a HEAD answer.
        #expect(client.send(Array("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        let pair = try client.readUntil("ok\n")
        #expect(pair.hasPrefix("HTTP/1.1 200 OK\r\n"))
        let afterHead = pair.range(of: "\r\n\r\n").map { pair[$0.upperBound...] } ?? ""
        #expect(afterHead.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(try CurlClient.request("HEAD", "http://127.0.0.1:\(port)/healthz").status == 200)
    }

    // MARK: helpers

    private static func environment(_ redis: RedisServer, workers: Int = 1) -> [String: String] {
        ["LISTEN": "127.0.0.1:0", "WORKERS": String(workers), "REDIS_URL": redis.url, "VOUCHERIFY_APP_ID": FakeVoucherify.appID,
         "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken, "LOG_LEVEL": "info", "LOG_FORMAT": "text"]
    }

    /// GET /healthz on a kept-alive connection: true on its 200.
    private static func healthz(on client: RawTCPClient) throws -> Bool {
        guard client.send(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)) else { return false }
        return try client.readUntil("ok\n").hasPrefix("HTTP/1.1 200 OK")
    }

    /// utime + stime of `pid`, in clock ticks (/proc/<pid>/stat fields 14 and 15).
    private static func cpuTicks(_ pid: Int32) throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The command name (field 2) may hold spaces; fields are counted after its ')'.
        guard let close = stat.lastIndex(of: ")") else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        return user + system
    }

    /// VmRSS of `pid`, in bytes.
    private static func residentBytes(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw TestFailure("no VmRSS in /proc/\(pid)/status")
        }
        return kib * 1024
    }
}
