import EventLoop
import Foundation
import Logging
import RedisClient
import Synchronization
import Testing

/// The generic Redis client against a real redis-server: handshake, readiness, deadlines.
@Suite(.serialized) struct RedisConnectionTests {
    /// Each test runs a redis-server: it counts as a stack (a suite instance is made per test).
    private let permit = StackPermit()

    /// A Redis connection on its own loop thread.
    final class Client: @unchecked Sendable {
        let group: LoopGroup
        var loop: Loop { group.loops[0] }
        private var connection: LoopBound<RedisConnection>?

        init(_ url: String, wallClock: (@Sendable () -> Int64)? = nil) throws {
            group = LoopGroup(loops: [try Loop(wallClock: wallClock)])
            try group.start()
            let loop = group.loops[0]
            let configuration = try RedisConfiguration(url: url)
            connection = try loop.runAndWait {
                let connection = try RedisConnection(loop: loop, configuration: configuration,
                                                     logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
                connection.start()
                return LoopBound(connection, loop: loop)
            }
        }

        deinit {
            try? loop.runAndWait { [connection] in connection?.value.close() }
            group.stopAndWait()
        }

        var isReady: Bool { (try? loop.runAndWait { [connection] in connection!.value.isReady }) ?? false }

        /// Sends one command and waits for its outcome.
        func send(_ arguments: String...) throws -> Result<RedisReply, RedisError> {
            let done = DispatchSemaphore(value: 0)
            let outcome = Mutex<Result<RedisReply, RedisError>?>(nil)
            try send(arguments) { result in
                outcome.withLock { $0 = result }
                done.signal()
            }
            done.wait()
            return outcome.withLock { $0! }
        }

        /// Sends one command; `completion` runs on the loop.
        func send(_ arguments: [String], completion: @escaping @Sendable (Result<RedisReply, RedisError>) -> Void) throws {
            try loop.runAndWait { [connection] in connection!.value.send(arguments.map { Array($0.utf8) }, completion: completion) }
        }

        func close() throws { try loop.runAndWait { [connection] in connection?.value.close() } }
    }

    /// Deadlines run on the monotonic clock: a wall clock that leaps an hour at every reading
    /// (an NTP step, exaggerated) must not time out a single command.
    @Test func commandDeadlinesIgnoreWallClockSteps() throws {
        let redis = try RedisServer()
        let leaps = Atomic<Int64>(0)
        let client = try Client(redis.url, wallClock: { 1_800_000_000_000 + leaps.add(3_600_000, ordering: .relaxed).newValue })
        try waitUntil("the Redis client is ready") { client.isReady }
        // Redis holds each PING for 200 ms, inside the 500 ms command timeout: the client's
        // deadline sweep runs while the command is in flight and must not see it as late.
        for _ in 0..<3 {
            try redis.cli("CLIENT", "PAUSE", "200", "ALL")
            #expect(try client.send("PING") == .success(.status("PONG")))
        }
    }

    /// A Redis that refuses our password accepts the TCP connection: the client must not count
    /// that as ready, and commands fail at once instead of collecting NOAUTH errors.
    @Test func aRefusedHandshakeIsNotReady() throws {
        let redis = try RedisServer(password: "right-password")
        let client = try Client("redis://:wrong-password@127.0.0.1:\(redis.port)")
        // Redis records every refused AUTH in its ACL log: wait until ours was refused.
        try waitUntil("Redis refused our AUTH") { try redis.cli("ACL", "LOG").contains("auth") }
        #expect(!client.isReady)
        #expect(try client.send("PING") == .failure(.notConnected))

        let good = try Client("redis://:right-password@127.0.0.1:\(redis.port)")
        try waitUntil("the Redis client is ready") { good.isReady }
        #expect(try good.send("PING") == .success(.status("PONG")))
    }

    /// A refused SELECT (no such database) lets the handshake's PING through: still not ready.
    @Test func aRefusedSelectIsNotReadyEvenThoughPingAnswers() throws {
        let redis = try RedisServer()
        let client = try Client("redis://127.0.0.1:\(redis.port)/99")
        try waitUntil("several connection attempts were made") {
            let stats = try redis.cli("INFO", "stats")
            let line = stats.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_connections_received:") }
            return (line.flatMap { Int($0.split(separator: ":")[1]) } ?? 0) >= 3
        }
        #expect(!client.isReady)
        #expect(try client.send("PING") == .failure(.notConnected))
    }

    /// A Redis that stops answering: the command times out, the connection is no longer ready
    /// (so callers do not queue behind it), and it comes back by itself once Redis answers.
    @Test func aSilentRedisIsNotReadyUntilItAnswersAgain() throws {
        let redis = try RedisServer()
        let client = try Client(redis.url)
        try waitUntil("the Redis client is ready") { client.isReady }
        try redis.cli("CLIENT", "PAUSE", "2000", "ALL")
        #expect(try client.send("PING") == .failure(.timedOut(milliseconds: 500)))
        #expect(!client.isReady)
        try waitUntil("the Redis client is ready") { client.isReady }
        #expect(try client.send("PING") == .success(.status("PONG")))
    }

    /// Closing fails what is in flight exactly once, and nothing reaches the closed client.
    @Test func closeFailsPendingCommandsOnce() throws {
        let redis = try RedisServer()
        let client = try Client(redis.url)
        try waitUntil("the Redis client is ready") { client.isReady }
        try redis.cli("CLIENT", "PAUSE", "1000", "ALL")
        let completions = Mutex<[Result<RedisReply, RedisError>]>([])
        let done = DispatchSemaphore(value: 0)
        try client.send(["PING"]) { result in
            completions.withLock { $0.append(result) }
            done.signal()
        }
        try client.close()
        done.wait()
        try client.loop.runAndWait {}
        #expect(completions.withLock { $0 } == [.failure(.connectionLost)])
        #expect(try client.send("PING") == .failure(.notConnected))
    }
}
