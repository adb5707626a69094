import Foundation

/// Replicas of the built `points-expiry` binary (separate processes, 2 workers each) sharing one
/// redis-server and one fake Voucherify: what "fleet-wide" means in production.
final class Fleet: @unchecked Sendable {
    /// Taken before anything starts; given back after `deinit` stopped everything.
    private let permit = StackPermit()
    let redis: RedisServer
    let fake: FakeVoucherify
    private(set) var replicas: [ServiceProcess] = []

    init(replicas count: Int = 2, environment: [String: String] = [:], fakeArguments: [String] = []) throws {
        redis = try RedisServer()
        fake = try FakeVoucherify(arguments: fakeArguments)
        for _ in 0..<count {
            replicas.append(try ServiceProcess(redisURL: redis.url, voucherifyURL: fake.baseURL, environment: environment))
        }
    }

    deinit {
        for replica in replicas { replica.stop() }
        fake.stop()
        redis.stop()
    }

    /// Kills one replica at once (SIGKILL: no drain, no lease release), as a crash would.
    func crash(_ index: Int) { replicas[index].child.forceKill() }

    /// `count` Connect GET calls of GetMemberExpiration spread over the replicas (round robin), all
    /// in flight together: one curl process per replica, each multiplexing its calls over h2c.
    func burst(member: String, campaign: String = FakeVoucherify.campaignID, count: Int, headers: [String] = []) throws -> [BurstResult] {
        let perReplica = (0..<replicas.count).map { count / replicas.count + ($0 < count % replicas.count ? 1 : 0) }
        let outcome = LockedArray<Result<[BurstResult], Error>>()
        let group = DispatchGroup()
        for (replica, calls) in zip(replicas, perReplica) where calls > 0 {
            group.enter()
            DispatchQueue.global().async {
                defer { group.leave() }
                outcome.append(Result { try CurlClient.burst(replica.getURL(member: member, campaign: campaign), count: calls, headers: headers) })
            }
        }
        group.wait()
        return try outcome.all.flatMap { try $0.get() }
    }
}

/// One `points-expiry serve` child on a free port.
final class ServiceProcess: @unchecked Sendable {
    let child: ChildProcess
    let baseURL: String

    init(redisURL: String, voucherifyURL: String, environment: [String: String]) throws {
        child = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: [
            "LISTEN": "127.0.0.1:0", "WORKERS": "2", "REDIS_URL": redisURL, "VOUCHERIFY_API_URL": voucherifyURL,
            "VOUCHERIFY_APP_ID": FakeVoucherify.appID, "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken, "LOG_LEVEL": "info",
            "LOG_FORMAT": "text",
        ].merging(environment) { _, new in new })
        baseURL = "http://127.0.0.1:\(try Self.listeningPort(of: child))"
        // Two workers: /readyz lands on either, so ask until both have said yes a few times.
        var readyAnswers = 0
        try waitUntil("\(baseURL)/readyz answers 200", interval: 0.02) {
            readyAnswers += (try? CurlClient.request("GET", baseURL + "/readyz"))?.status == 200 ? 1 : 0
            return readyAnswers >= 4
        }
    }

    func stop() { child.stop() }

    func get(member: String, campaign: String = FakeVoucherify.campaignID, headers: [String] = []) throws -> HTTPResult {
        try CurlClient.request("POST", baseURL + ServiceUnderTest.rpc, body: Data(#"{"campaign":"\#(campaign)","member":"\#(member)"}"#.utf8),
                               headers: ["content-type: application/json"] + headers)
    }

    func getURL(member: String, campaign: String) -> String {
        let message = #"{"campaign":"\#(campaign)","member":"\#(member)"}"#
            .addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        return baseURL + ServiceUnderTest.rpc + "?encoding=json&message=" + message
    }

    func metrics() throws -> String { try CurlClient.request("GET", baseURL + "/metrics").text }

    /// The port from the "listening" log line (`listen=127.0.0.1:PORT`): the binary was started
    /// with port 0, so only it knows which port it got.
    static func listeningPort(of service: ChildProcess) throws -> Int {
        let line = try service.waitForLine(containing: "points-expiry listening")
        guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("listen=") }),
              let port = field.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw TestFailure("no listen=HOST:PORT in \(line)")
        }
        return port
    }
}

/// One call of a burst: its HTTP status and the headers that tell how it was answered.
struct BurstResult: Equatable {
    let status: Int
    let cache: String
    let retryAfter: String
}

/// What several threads of a test collect.
final class LockedArray<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private var elements: [Element] = []

    func append(_ element: Element) { lock.withLock { elements.append(element) } }

    var all: [Element] { lock.withLock { elements } }
}

extension CurlClient {
    /// `count` GETs of `url` in parallel from one curl process (h2c, multiplexed on one
    /// connection), each bounded by `timeoutSeconds`.
    static func burst(_ url: String, count: Int, headers: [String] = [], timeoutSeconds: Double = 30) throws -> [BurstResult] {
        var arguments = ["-s", "--http2-prior-knowledge", "-Z", "--parallel-immediate", "--parallel-max", String(min(count, 300)),
                         "--max-time", String(timeoutSeconds), "-w", "%{http_code}|%header{x-cache}|%header{retry-after}\n"]
        for header in headers { arguments += ["-H", header] }
        for _ in 0..<count { arguments += ["-o", "/dev/null", url] }
        let lines = try run("/usr/bin/curl", arguments).split(separator: "\n")
        guard lines.count == count else { throw TestFailure("curl burst: \(lines.count) of \(count) answers") }
        return lines.map { line in
            let fields = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            return BurstResult(status: Int(fields[0]) ?? 0, cache: fields.count > 1 ? fields[1] : "", retryAfter: fields.count > 2 ? fields[2] : "")
        }
    }
}
