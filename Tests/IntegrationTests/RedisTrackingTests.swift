import EventLoop
import Foundation
import Logging
import RedisClient
import Synchronization
import Testing

/// Server-assisted client-side caching (BCAST, self-redirected, RESP2 Pub/Sub) against a real
/// redis-server: what is reported, when tracking is on, and that it comes back by itself.
@Suite(.serialized) struct RedisTrackingTests {
    /// Each test runs a redis-server: it counts as a stack (a suite instance is made per test).
    private let permit = StackPermit()

    /// What a listener reported, in order.
    enum Event: Equatable, Sendable {
        case tracking(Bool)
        case invalidated(RedisInvalidation)
    }

    /// Everything reported, from the loop thread.
    final class Recorder: Sendable {
        private let events = Mutex<[Event]>([])
        func append(_ event: Event) { events.withLock { $0.append(event) } }
        var all: [Event] { events.withLock { $0 } }
    }

    /// A listener on its own loop thread, recording what it reports.
    final class Listener: @unchecked Sendable {
        let group: LoopGroup
        var loop: Loop { group.loops[0] }
        private let recorder = Recorder()
        private var listener: LoopBound<RedisInvalidationListener>?
        /// Set on the loop at creation: nil once the listener is freed.
        nonisolated(unsafe) private weak var weakListener: RedisInvalidationListener?

        init(_ url: String, prefixes: [String] = ["pe:{"], limits: RedisInvalidationLimits = RedisInvalidationLimits(),
             tune: (inout RedisConfiguration) -> Void = { _ in }) throws {
            group = LoopGroup(loops: [try Loop()])
            try group.start()
            let loop = group.loops[0]
            var configuration = try RedisConfiguration(url: url)
            // Generous, so a slow shared machine never loses tracking where a test expects none.
            configuration.commandTimeoutMilliseconds = 5000
            tune(&configuration)
            let fixed = configuration
            listener = try loop.runAndWait { [recorder] in
                let listener = try RedisInvalidationListener(loop: loop, configuration: fixed, prefixes: prefixes, limits: limits,
                                                             logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
                listener.onInvalidation = { invalidation in recorder.append(.invalidated(invalidation)) }
                listener.onTrackingChanged = { on in recorder.append(.tracking(on)) }
                listener.start()
                return LoopBound(listener, loop: loop)
            }
            try loop.runAndWait { [self] in weakListener = listener?.value }
        }

        deinit {
            try? loop.runAndWait { [self] in
                listener?.value.close()
                listener = nil
            }
            group.stopAndWait()
        }

        var events: [Event] { recorder.all }

        var trackingChanges: [Bool] {
            events.compactMap { if case .tracking(let on) = $0 { on } else { nil } }
        }

        var invalidations: [RedisInvalidation] {
            events.compactMap { if case .invalidated(let what) = $0 { what } else { nil } }
        }

        /// Every key reported, as text, in order (a key twice if reported twice).
        var invalidatedKeys: [String] {
            invalidations.flatMap { invalidation -> [String] in
                guard case .keys(let keys) = invalidation else { return [] }
                return keys.map { String(decoding: $0, as: UTF8.self) }
            }
        }

        var isTracking: Bool { (try? loop.runAndWait { [listener] in listener?.value.isTracking ?? false }) ?? false }

        func close() throws { try loop.runAndWait { [listener] in listener?.value.close() } }

        /// Drops our reference on the loop; true when that freed the listener (no timer,
        /// callback or context kept it alive).
        func releaseAndCheckFreed() throws -> Bool {
            try loop.runAndWait { [self] in listener = nil }
            return try loop.runAndWait { [self] in weakListener == nil }
        }
    }

    /// Writes under the prefix are reported with their key; writes elsewhere are not.
    @Test func writesUnderThePrefixAreReportedWithTheirKey() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url)
        try waitUntil("tracking is on") { listener.isTracking }
        #expect(listener.trackingChanges == [true])
        // Redis handles both writes in order and sends an invalidation right after the write
        // that caused it: had the first been reported, it would come before the second.
        try redis.cli("SET", "other:{m1}:answers", "v")
        try redis.cli("HSET", "pe:{m1}:answers", "c", "v")
        try waitUntil("the write was reported") { listener.invalidatedKeys.contains("pe:{m1}:answers") }
        #expect(listener.invalidatedKeys == ["pe:{m1}:answers"])
    }

    /// FLUSHALL is "everything"; a key that expires is reported like a write.
    @Test func flushAllAndExpiryAreReported() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url)
        try waitUntil("tracking is on") { listener.isTracking }
        try redis.cli("FLUSHALL")
        try waitUntil("FLUSHALL was reported") { listener.invalidations.contains(.all) }
        // Once for the SET, once more when it expires.
        try redis.cli("SET", "pe:{m2}:answers", "v", "PX", "50")
        try waitUntil("the expiry was reported") { listener.invalidatedKeys.filter { $0 == "pe:{m2}:answers" }.count >= 2 }
        #expect(try redis.cli("EXISTS", "pe:{m2}:answers") == "0")
        #expect(listener.trackingChanges == [true])
    }

    /// One command writing several keys is one message with all of them.
    @Test func severalKeysInOneMessage() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url)
        try waitUntil("tracking is on") { listener.isTracking }
        try redis.cli("MSET", "pe:{a}:answers", "1", "pe:{b}:answers", "2", "pe:{c}:answers", "3")
        try waitUntil("the MSET was reported") { !listener.invalidations.isEmpty }
        let keys = ["pe:{a}:answers", "pe:{b}:answers", "pe:{c}:answers"].map { Array($0.utf8) }
        guard case .keys(let reported) = listener.invalidations.first else {
            Issue.record("expected keys, got \(listener.invalidations)")
            return
        }
        #expect(Set(reported) == Set(keys))
        #expect(reported.count == 3)
    }

    /// Beyond the limits a message counts as "everything" (the cache just flushes).
    @Test func aMessageOverTheLimitsIsEverything() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url, limits: RedisInvalidationLimits(maxKeysPerMessage: 2, maxKeyBytes: 32))
        try waitUntil("tracking is on") { listener.isTracking }
        try redis.cli("MSET", "pe:{a}:1", "1", "pe:{b}:2", "2", "pe:{c}:3", "3")
        try waitUntil("three keys at once were reported") { listener.invalidations == [.all] }
        try redis.cli("SET", "pe:{" + String(repeating: "x", count: 40) + "}", "v")
        try waitUntil("a long key was reported") { listener.invalidations == [.all, .all] }
        try redis.cli("MSET", "pe:{a}:1", "1", "pe:{b}:2", "2")
        try waitUntil("two keys were reported") { listener.invalidations.count == 3 }
        #expect(listener.invalidations.last.map { if case .keys(let keys) = $0 { keys.count } else { 0 } } == 2)
    }

    /// The server drops the subscriber: tracking is reported lost, comes back by itself, and
    /// invalidations flow again on the new connection.
    @Test func trackingIsLostWithTheConnectionAndComesBack() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url)
        try waitUntil("tracking is on") { listener.isTracking }
        #expect(try redis.cli("CLIENT", "KILL", "TYPE", "pubsub") == "1")
        try waitUntil("the loss was reported") { listener.trackingChanges.count >= 2 }
        try waitUntil("tracking is on again") { listener.isTracking }
        #expect(listener.trackingChanges == [true, false, true])
        // The new connection is the one tracking: its id is the redirect target.
        let clients = try redis.cli("CLIENT", "LIST", "TYPE", "pubsub")
        #expect(clients.split(separator: "\n").count == 1, "\(clients)")
        try redis.cli("HSET", "pe:{m3}:answers", "c", "v")
        try waitUntil("the write was reported") { listener.invalidatedKeys.contains("pe:{m3}:answers") }
    }

    /// A SIGSTOPped Redis (TCP accepted, nothing answered): the quiet subscription notices by
    /// its probe within about interval + timeout, and tracks again once Redis answers.
    @Test func aHungRedisIsReportedLostAndTrackedAgainAfter() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url) { configuration in
            configuration.healthCheckIntervalMilliseconds = 200
            configuration.commandTimeoutMilliseconds = 1000
        }
        try waitUntil("tracking is on") { listener.isTracking }
        redis.suspend()
        defer { redis.resume() }
        let stopped = ContinuousClock.now
        try waitUntil("the hang was noticed", timeout: 30) { !listener.isTracking }
        let noticedAfter = ContinuousClock.now - stopped
        // 1.2 s expected; the bound only catches a probe that never fires.
        #expect(noticedAfter < .seconds(15), "\(noticedAfter)")
        #expect(listener.trackingChanges.prefix(2) == [true, false])
        redis.resume()
        try waitUntil("tracking is on again") { listener.isTracking }
        try redis.cli("HSET", "pe:{m4}:answers", "c", "v")
        try waitUntil("the write was reported") { listener.invalidatedKeys.contains("pe:{m4}:answers") }
    }

    /// Messages that arrive while a probe waits for its answer still reach the listener, and
    /// the probe is still counted as answered. A script keeps Redis busy for 300 ms (the
    /// listener probes every 20 ms, so a probe waits in Redis' socket meanwhile) and writes a
    /// key at its end: Redis sends that key's invalidation before it reads the probe. Then
    /// hundreds of writes with probes in the gaps between them.
    @Test func messagesWhileAProbeIsPendingAreDelivered() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url) { configuration in
            configuration.healthCheckIntervalMilliseconds = 20
            configuration.commandTimeoutMilliseconds = 5000
        }
        try waitUntil("tracking is on") { listener.isTracking }
        let busyThenWrite = """
            local t = redis.call('TIME')
            local start = t[1] * 1000000 + t[2]
            repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= 300000
            return redis.call('SET', KEYS[1], 'v')
            """
        for round in 0..<3 {
            let probes = try Self.subscribeCalls(redis)
            try redis.cli("EVAL", busyThenWrite, "1", "pe:{busy\(round)}:answers")
            try waitUntil("the write at the end of the script was reported") { listener.invalidatedKeys.contains("pe:{busy\(round)}:answers") }
            try waitUntil("the probe was answered and another sent") { try Self.subscribeCalls(redis) >= probes + 2 }
        }

        // redis-cli reading commands from stdin sends each and waits for its answer: one
        // invalidation message per write, spread over time.
        let count = 500
        let script = (0..<count).map { "SET pe:{k\($0)}:answers v\n" }.joined()
        _ = try runWithInput("/usr/bin/redis-cli", ["-p", String(redis.port)], Data(script.utf8))
        try waitUntil("every write was reported") { Set(listener.invalidatedKeys).count == count + 3 }
        #expect(Set(listener.invalidatedKeys) == Set((0..<count).map { "pe:{k\($0)}:answers" } + (0..<3).map { "pe:{busy\($0)}:answers" }))
        #expect(listener.isTracking)
        #expect(listener.trackingChanges == [true])
    }

    /// close() reports false last, frees the connection and the listener, and nothing is
    /// reported afterwards.
    @Test func closeReportsFalseAndFreesEverything() throws {
        let redis = try RedisServer()
        let listener = try Listener(redis.url)
        try waitUntil("tracking is on") { listener.isTracking }
        try listener.close()
        #expect(listener.events == [.tracking(true), .tracking(false)])
        #expect(!listener.isTracking)
        try waitUntil("Redis saw the subscriber go") { try redis.cli("CLIENT", "LIST", "TYPE", "pubsub").isEmpty }
        try redis.cli("HSET", "pe:{m5}:answers", "c", "v")
        try redis.cli("FLUSHALL")
        try listener.loop.runAndWait {}
        #expect(listener.events == [.tracking(true), .tracking(false)])
        try listener.close()
        #expect(try listener.releaseAndCheckFreed())
        #expect(listener.events == [.tracking(true), .tracking(false)])
    }

    /// AUTH and SELECT from the URL go first on the tracking connection too; a refused
    /// password never turns tracking on.
    @Test func passwordAndDatabaseFromTheURL() throws {
        let redis = try RedisServer(password: "right-password")
        let refused = try Listener("redis://:wrong-password@127.0.0.1:\(redis.port)/2")
        let listener = try Listener("redis://:right-password@127.0.0.1:\(redis.port)/2")
        try waitUntil("tracking is on") { listener.isTracking }
        try redis.cli("-n", "2", "HSET", "pe:{m6}:answers", "c", "v")
        try waitUntil("the write was reported") { listener.invalidatedKeys.contains("pe:{m6}:answers") }
        try waitUntil("Redis refused the wrong password") { try redis.cli("ACL", "LOG").contains("auth") }
        #expect(!refused.isTracking)
        #expect(refused.events.isEmpty)
    }

    /// Calls of SUBSCRIBE the server has handled (the listener's first one and its probes).
    static func subscribeCalls(_ redis: RedisServer) throws -> Int {
        let stats = try redis.cli("INFO", "commandstats")
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_subscribe:") }),
              let calls = line.split(separator: ",").first?.split(separator: "=").last.flatMap({ Int($0) }) else { return 0 }
        return calls
    }
}
