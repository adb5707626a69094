import EventLoop
import Foundation
import Logging
import RedisClient
import Synchronization
import Testing

/// A Redis that accepts connections and never answers (a SIGSTOPped redis-server, or a socket
/// nobody reads) is noticed by an idle connection, reported with its reason, and turns `/readyz`
/// and the gRPC health check NOT_SERVING until it answers again.
@Suite(.serialized) struct RedisHangTests {
    /// What a connection's observer heard, in order.
    final class Observed: Sendable {
        private let outcomes = Mutex<[RedisCommandOutcome]>([])
        private let latencies = Mutex<[Double]>([])
        private let readiness = Mutex<[Bool]>([])

        var observer: RedisConnectionObserver {
            RedisConnectionObserver(commandFinished: { outcome, seconds in
                self.outcomes.withLock { $0.append(outcome) }
                self.latencies.withLock { $0.append(seconds) }
            }, readinessChanged: { ready in self.readiness.withLock { $0.append(ready) } })
        }

        var allOutcomes: [RedisCommandOutcome] { outcomes.withLock { $0 } }
        var allLatencies: [Double] { latencies.withLock { $0 } }
        var readinessChanges: [Bool] { readiness.withLock { $0 } }
    }

    /// A Redis connection with an observer, on its own loop thread.
    final class Client: @unchecked Sendable {
        let group: LoopGroup
        let observed = Observed()
        private let connection: LoopBound<RedisConnection>
        var loop: Loop { group.loops[0] }

        init(_ url: String) throws {
            group = LoopGroup(loops: [try Loop()])
            try group.start()
            let loop = group.loops[0]
            let configuration = try RedisConfiguration(url: url)
            let observer = observed.observer
            connection = try loop.runAndWait {
                let connection = try RedisConnection(loop: loop, configuration: configuration,
                                                     logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
                connection.observer = observer
                connection.start()
                return LoopBound(connection, loop: loop)
            }
        }

        deinit {
            try? loop.runAndWait { [connection] in connection.value.close() }
            group.stopAndWait()
        }

        var notReadyReason: String? {
            do {
                return try loop.runAndWait { [connection] in connection.value.notReadyReason }
            } catch {
                return "loop gone"
            }
        }
        var isReady: Bool { notReadyReason == nil }

        func send(_ arguments: String...) throws -> Result<RedisReply, RedisError> {
            let done = DispatchSemaphore(value: 0)
            let outcome = Mutex<Result<RedisReply, RedisError>?>(nil)
            try loop.runAndWait { [connection] in
                connection.value.send(arguments.map { Array($0.utf8) }) { result in
                    outcome.withLock { $0 = result }
                    done.signal()
                }
            }
            done.wait()
            return outcome.withLock { $0! }
        }
    }

    /// A socket on 127.0.0.1 that listens and never accepts: the kernel completes every TCP
    /// handshake, and nothing ever answers.
    final class SilentListener: @unchecked Sendable {
        let port: Int
        private let fd: Int32

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestFailure("socket() failed") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                    guard bind(fd, pointer, length) == 0, listen(fd, 128) == 0 else { return -1 }
                    return getsockname(fd, pointer, &length)
                }
            }
            guard bound == 0 else {
                close(fd)
                throw TestFailure("bind/listen failed")
            }
            port = Int(UInt16(bigEndian: address.sin_port))
            self.fd = fd
        }

        deinit { close(fd) }

        var url: String { "redis://127.0.0.1:\(port)" }
    }

    /// Nothing is asked of an idle connection, and still it notices Redis stopped answering (its
    /// health PING times out), says why, tells its observer, and comes back once Redis answers.
    @Test func anIdleConnectionNoticesARedisThatHangs() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        let client = try Client(redis.url)
        try waitUntil("the Redis client is ready") { client.isReady }
        #expect(try client.send("PING") == .success(.status("PONG")))
        #expect(try client.send("NO-SUCH-COMMAND") != .success(.status("PONG")))
        redis.suspend()
        defer { redis.resume() }
        try waitUntil("the idle connection noticed the hang") { !client.isReady }
        #expect(client.notReadyReason?.contains("Redis not answering within") == true, "\(client.notReadyReason ?? "ready")")
        #expect(try client.send("PING") == .failure(.notConnected))
        // Overdue first (no command queues behind it), then timed out and dropped.
        try waitUntil("the overdue PING timed out") { client.observed.readinessChanges == [true, false] }
        #expect(client.notReadyReason?.contains("Redis not answering within") == true, "\(client.notReadyReason ?? "ready")")
        redis.resume()
        try waitUntil("the Redis client is ready again") { client.isReady }
        #expect(try client.send("PING") == .success(.status("PONG")))

        let outcomes = client.observed.allOutcomes
        // The error reply above, at least one timed-out health PING, and the last PING.
        #expect(outcomes.contains(.error))
        #expect(outcomes.contains(.timeout))
        #expect(outcomes.last == .ok)
        #expect(client.observed.allLatencies.allSatisfy { $0 >= 0 && $0 < 60 })
        #expect(client.observed.readinessChanges == [true, false, true])
    }

    /// A listener that accepts and never answers: the handshake never completes, so the
    /// connection is never ready, and it says so in terms a probe can show.
    @Test func aRedisThatNeverAnswersIsNeverReady() throws {
        let listener = try SilentListener()
        let client = try Client(listener.url)
        try waitUntil("the handshake timed out (now: \(client.notReadyReason ?? "ready"))", timeout: 20) {
            client.notReadyReason == "Redis not answering within 500 ms"
        }
        #expect(try client.send("PING") == .failure(.notConnected))
        #expect(client.observed.readinessChanges.isEmpty)
    }

    /// The service's `/readyz` and gRPC health while its Redis is SIGSTOPped: 503 with the reason
    /// and NOT_SERVING, every worker unready by itself; all good again once Redis answers.
    @Test func healthIsNotServingWhileRedisHangs() throws {
        let service = try ServiceUnderTest()
        service.redis.suspend()
        defer { service.redis.resume() }
        let ready = try CurlClient.request("GET", service.baseURL + "/readyz")
        #expect(ready.status == 503)
        #expect(ready.text.contains("not ready: Redis not answering within"), "\(ready.text)")
        try service.expectHealthNotServing()
        try waitUntil("every worker noticed by itself") { !service.app.allWorkersReady() }
        service.redis.resume()
        try service.waitUntilReady()
        let health = try CurlClient.request("POST", service.baseURL + "/grpc.health.v1.Health/Check", body: Data(#"{"service":""}"#.utf8),
                                            headers: ["content-type: application/json"])
        #expect(health.json["status"] as? String == "SERVING")
    }

    /// A service told to use a Redis that accepts and never answers never turns ready, says why,
    /// and still answers from Voucherify.
    @Test func aServiceWhoseRedisNeverAnswersIsNotReady() throws {
        let listener = try SilentListener()
        let service = try ServiceUnderTest(redisURL: { _ in listener.url }, waitUntilReady: false)
        var last = ""
        try waitUntil("/readyz names the hang (now: \(last))", timeout: 20) {
            let ready = try CurlClient.request("GET", service.baseURL + "/readyz")
            last = ready.text
            return ready.status == 503 && ready.text.contains("Redis not answering within 500 ms")
        }
        try service.expectHealthNotServing()
        try service.fake.putMember("CARD-H", buckets: buckets(1))
        let answer = try service.get(member: "CARD-H")
        #expect(answer.status == 200)
        #expect(answer.headers["x-cache"] == "miss")
    }
}
