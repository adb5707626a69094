import EventLoop
import Foundation
import Logging
import RedisClient
import Synchronization
import Testing
import TestSupport
import Voucherify
@testable import PointsExpiryServer

/// The shared upstream rate budget against a real redis-server: several workers (each a loop with
/// its own Redis connection) and replicas (each with its own local budget) share one budget.
/// Rates are chosen so that refills during a test are either none (`/hour`) or far apart from the
/// assertions' margins: a slow machine makes these tests slower, not wrong.
@Suite(.serialized) struct RateBudgetTests {
    /// Each test runs a redis-server: it counts as a stack.
    private let permit = StackPermit()

    // MARK: fixtures

    /// What the admissions of one test were told, in the order they were told.
    final class Outcomes: Sendable {
        struct Outcome: Sendable {
            let label: String
            let result: Result<Void, VoucherifyError>
        }

        private let list = Mutex<[Outcome]>([])

        func record(_ label: String, _ result: Result<Void, VoucherifyError>) { list.withLock { $0.append(Outcome(label: label, result: result)) } }
        var all: [Outcome] { list.withLock { $0 } }
        var granted: Int { all.filter { (try? $0.result.get()) != nil }.count }
        /// The retry-after of every refusal.
        var retryAfters: [Int?] {
            all.compactMap { outcome in
                guard case .failure(.rateLimited(let seconds)) = outcome.result else { return nil }
                return seconds
            }
        }

        func index(of label: String) -> Int? { all.firstIndex { $0.label == label } }
        /// The retry-after `label` was refused with; nil when it was admitted.
        func retryAfter(of label: String) -> Int? {
            guard case .failure(.rateLimited(let seconds)) = all.first(where: { $0.label == label })?.result else { return nil }
            return seconds
        }
    }

    /// One worker of one replica: a loop, its Redis connection and its `RateBudget`.
    final class Worker: @unchecked Sendable {
        struct Parts {
            let redis: RedisConnection
            let budget: RateBudget
            let interactive: any UpstreamAdmission
            let warming: any UpstreamAdmission
        }

        let group: LoopGroup
        var loop: Loop { group.loops[0] }
        private var parts: LoopBound<Parts>?

        /// `local` is the replica's: workers of one replica share it, replicas do not.
        init(redisURL: String, local: LocalRateBudget, metrics: Metrics) throws {
            group = LoopGroup(loops: [try Loop()])
            try group.start()
            let loop = group.loops[0]
            let configuration = try RedisConfiguration(url: redisURL)
            parts = try loop.runAndWait {
                let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
                let redis = try RedisConnection(loop: loop, configuration: configuration, logger: logger)
                let budget = try RateBudget(loop: loop, redis: redis, local: local, metrics: metrics, logger: logger)
                redis.start()
                return LoopBound(Parts(redis: redis, budget: budget, interactive: budget.interactive, warming: budget.warming), loop: loop)
            }
        }

        deinit {
            try? loop.runAndWait { [parts] in
                parts?.value.budget.close()
                parts?.value.redis.close()
            }
            group.stopAndWait()
        }

        var isReady: Bool { (try? loop.runAndWait { [parts] in parts!.value.redis.isReady }) ?? false }

        /// Asks for one call per entry, in order, from one loop turn; a call waits up to its
        /// milliseconds (nil: must not wait). Returns once every call was answered.
        @discardableResult
        func admit(_ calls: [(label: String, waitUpTo: Int64?)], _ priority: AdmissionPriority = .interactive,
                   into outcomes: Outcomes = Outcomes()) throws -> Outcomes {
            let before = outcomes.all.count
            loop.execute { [parts] in
                let parts = parts!.value
                let admission = priority == .warming ? parts.warming : parts.interactive
                let now = Loop.monotonicMilliseconds()
                for call in calls {
                    admission.admit(deadline: call.waitUpTo.map { now + $0 } ?? 0) { outcomes.record(call.label, $0) }
                }
            }
            try waitUntil("\(calls.count) calls were answered") { outcomes.all.count == before + calls.count }
            return outcomes
        }

        /// `count` calls that must not wait.
        func admitNow(_ count: Int, _ priority: AdmissionPriority = .interactive) throws -> Outcomes {
            try admit((0..<count).map { ("now \($0)", nil) }, priority)
        }

        func observe(_ observation: RateLimitObservation) {
            loop.execute { [parts] in parts!.value.interactive.observe(observation) }
        }

        /// Sends one command on this worker's connection and waits for the answer (which the
        /// connection's command timeout bounds).
        func send(_ arguments: [[UInt8]]) throws -> Result<RedisReply, RedisError> {
            let answered = DispatchSemaphore(value: 0)
            let outcome = Mutex<Result<RedisReply, RedisError>?>(nil)
            loop.execute { [parts] in
                parts!.value.redis.send(arguments) { result in
                    outcome.withLock { $0 = result }
                    answered.signal()
                }
            }
            answered.wait()
            return outcome.withLock { $0! }
        }
    }

    static func local(_ rate: String?, reserve: String = "0.5") throws -> LocalRateBudget {
        LocalRateBudget(rules: RateBudgetRules(
            setting: try rate.map { text throws(ConfigurationError) in try RateLimitSetting(parsing: text) },
            reserve: try InteractiveReserve(parsing: reserve)))
    }

    /// Two replicas (each its own local budget) on one Redis, both connected.
    static func twoReplicas(_ redis: RedisServer, rate: String?, metrics: Metrics) throws -> (Worker, Worker) {
        let first = try Worker(redisURL: redis.url, local: try local(rate), metrics: metrics)
        let second = try Worker(redisURL: redis.url, local: try local(rate), metrics: metrics)
        try waitUntil("both workers are connected to Redis") { first.isReady && second.isReady }
        return (first, second)
    }

    /// Nothing listens on port 1 of the loopback (a privileged port no test binds).
    static let unreachableRedis = "redis://127.0.0.1:1"

    // MARK: the shared budget

    /// 20/min: the bucket starts with 20 tokens and gains one every 3 s.
    @Test func twoReplicasNeverGrantMoreThanTheRateInTotal() throws {
        let redis = try RedisServer()
        let metrics = Metrics()
        let (first, second) = try Self.twoReplicas(redis, rate: "20/min", metrics: metrics)
        let started = Loop.monotonicMilliseconds()
        var firstGranted = 0
        var secondGranted = 0
        var retryAfters: [Int?] = []
        for _ in 0..<3 {
            for (worker, count) in [(first, 12), (second, 12)] {
                let outcomes = try worker.admitNow(count)
                if worker === first { firstGranted += outcomes.granted } else { secondGranted += outcomes.granted }
                retryAfters += outcomes.retryAfters
            }
        }
        let elapsed = Loop.monotonicMilliseconds() - started
        #expect(firstGranted >= 12)
        #expect(secondGranted >= 8)
        #expect(firstGranted + secondGranted <= 20 + Int(elapsed / 3_000) + 1)
        #expect(firstGranted + secondGranted + retryAfters.count == 72)
        #expect(retryAfters.allSatisfy { (1...3).contains($0 ?? 0) })
        #expect(metricValue(metrics.render(), "points_expiry_rate_budget_local_decisions_total") == 0)
    }

    /// 10/hour with the default reserve: warming gets 5, interactive the other 5 (no refill
    /// within the test: one token takes 6 minutes).
    @Test func warmingStopsAtTheReserveWhileInteractiveContinues() throws {
        let redis = try RedisServer()
        let (first, second) = try Self.twoReplicas(redis, rate: "10/hour", metrics: Metrics())
        #expect(try first.admitNow(8, .warming).granted == 5)
        let refused = try second.admitNow(3, .warming)
        #expect(refused.granted == 0)
        // The bucket must be back above the reserve: a whole token, 6 minutes.
        #expect(refused.retryAfters.allSatisfy { (300...360).contains($0 ?? 0) })
        #expect(try second.admitNow(8, .interactive).granted == 5)
        #expect(try first.admitNow(1, .interactive).granted == 0)
    }

    @Test func a429SeenByOneReplicaBlocksTheOther() throws {
        let redis = try RedisServer()
        let (first, second) = try Self.twoReplicas(redis, rate: "100/hour", metrics: Metrics())
        let before = Loop.monotonicMilliseconds()
        first.observe(RateLimitObservation(remaining: 0, blockedForSeconds: 2))
        try waitUntil("the block is in Redis") { try !redis.cli("HGET", "pe:rate-budget", "blocked_until").isEmpty }
        // The second replica's own budget never heard of the block: Redis refuses.
        let refused = try second.admitNow(3)
        #expect(refused.granted == 0)
        #expect(refused.retryAfters.allSatisfy { (1...2).contains($0 ?? 0) })
        // A caller that may wait is admitted once the block is over, not before.
        let waited = try second.admit([("patient", 30_000)])
        #expect(waited.granted == 1)
        #expect(Loop.monotonicMilliseconds() - before >= 1_900)
    }

    @Test func theLastReportedRemainingCapsEveryReplica() throws {
        let redis = try RedisServer()
        let (first, second) = try Self.twoReplicas(redis, rate: "100/hour", metrics: Metrics())
        first.observe(RateLimitObservation(limit: 100, remaining: 3))
        try waitUntil("the remaining is in Redis") { try redis.cli("HGET", "pe:rate-budget", "remaining") == "3" }
        let capped = try second.admitNow(10)
        #expect(capped.granted == 3)
        // Until Voucherify reports again, or one window (an hour here) has passed.
        #expect(capped.retryAfters.allSatisfy { (3_500...3_600).contains($0 ?? 0) })
        // A late answer to an older call (a little higher) does not raise it; a new window does.
        second.observe(RateLimitObservation(limit: 100, remaining: 2))
        second.observe(RateLimitObservation(limit: 100, remaining: 90))
        try waitUntil("the new window's remaining is in Redis") { try redis.cli("HGET", "pe:rate-budget", "remaining") == "90" }
        #expect(try first.admitNow(5).granted == 5)
    }

    /// 60/min: once the bucket is drained a token comes every second. Waiters are served in
    /// order; one whose deadline comes before its token is refused early with a retry-after,
    /// and one that must not wait is refused at once.
    @Test func waitersAreServedInOrderWithinTheirDeadlines() throws {
        let redis = try RedisServer()
        let metrics = Metrics()
        let (worker, _) = try Self.twoReplicas(redis, rate: "60/min", metrics: metrics)
        var drained = try worker.admitNow(64)
        while drained.granted > 0 { drained = try worker.admitNow(10) }
        let outcomes = try worker.admit([("first", 30_000), ("second", 30_000), ("third", 30_000), ("late", 1_500), ("impatient", nil)])
        #expect(outcomes.retryAfter(of: "late") ?? 0 >= 1)
        #expect(outcomes.retryAfter(of: "impatient") ?? 0 >= 1)
        let order = ["first", "second", "third"].compactMap { outcomes.index(of: $0) }
        #expect(order == order.sorted() && order.count == 3)
        #expect(outcomes.granted == 3)
        // The late caller hears it before the token it would have needed even exists.
        #expect((outcomes.index(of: "late") ?? .max) < (outcomes.index(of: "third") ?? -1))
        #expect(metricValue(metrics.render(), "points_expiry_rate_budget_local_decisions_total") == 0)
    }

    // MARK: without Redis

    /// Two workers of one replica share its local budget: the same rate and reserve as Redis'.
    @Test func withoutRedisTheReplicasOwnBudgetKeepsTheSameLimits() throws {
        let metrics = Metrics()
        let local = try Self.local("5/hour")
        let first = try Worker(redisURL: Self.unreachableRedis, local: local, metrics: metrics)
        let second = try Worker(redisURL: Self.unreachableRedis, local: local, metrics: metrics)
        #expect(try first.admitNow(5, .warming).granted == 2)
        #expect(try second.admitNow(5, .warming).granted == 0)
        #expect(try second.admitNow(5, .interactive).granted == 3)
        #expect(try first.admitNow(1, .interactive).granted == 0)
        #expect(metricValue(metrics.render(), "points_expiry_rate_budget_local_decisions_total") > 0)
    }

    @Test func withoutRedisVoucherifysRemainingAndBlockStillHold() throws {
        let local = try Self.local(nil)
        let first = try Worker(redisURL: Self.unreachableRedis, local: local, metrics: Metrics())
        let second = try Worker(redisURL: Self.unreachableRedis, local: local, metrics: Metrics())
        first.observe(RateLimitObservation(remaining: 2))
        // `observe` runs on the first worker's loop; a round trip through it makes sure it ran.
        try first.loop.runAndWait {}
        #expect(try second.admitNow(5).granted == 2)
        let before = Loop.monotonicMilliseconds()
        second.observe(RateLimitObservation(blockedForSeconds: 2))
        try second.loop.runAndWait {}
        let refused = try first.admitNow(1)
        #expect(refused.retryAfters.allSatisfy { (1...2).contains($0 ?? 0) } && refused.granted == 0)
        // The block replaces the old window's cap: after it, calls go again.
        #expect(try first.admit([("patient", 30_000)]).granted == 1)
        #expect(Loop.monotonicMilliseconds() - before >= 1_900)
    }

    /// The replica's own budget counts what the shared one granted it, so losing Redis does not
    /// hand it a fresh bucket.
    @Test func losingRedisMidWayContinuesFromWhatThisReplicaSpent() throws {
        let redis = try RedisServer()
        let metrics = Metrics()
        let worker = try Worker(redisURL: redis.url, local: try Self.local("10/hour"), metrics: metrics)
        try waitUntil("the worker is connected to Redis") { worker.isReady }
        #expect(try worker.admitNow(6).granted == 6)
        #expect(metricValue(metrics.render(), "points_expiry_rate_budget_local_decisions_total") == 0)
        redis.stop()
        try waitUntil("the worker noticed Redis is gone") { !worker.isReady }
        #expect(try worker.admitNow(10).granted == 4)
        #expect(metricValue(metrics.render(), "points_expiry_rate_budget_local_decisions_total") > 0)
    }

    // MARK: the script is the Swift arithmetic

    /// Runs random sequences of grants and observations, at chosen times, through the Lua script
    /// (its body on a test clock instead of Redis' `TIME`) and through `RateBudgetState`, and
    /// compares every answer and the whole state after each step.
    @Test(arguments: [("7/sec", "0.5"), ("10/min", "0.3"), ("3/hour", "0.5"), ("2000/min", "0"), (nil, "0.5"), ("10/min", "1")])
    func theScriptIsATranscriptionOfTheSwiftArithmetic(_ rate: String?, _ reserve: String) throws {
        let redis = try RedisServer()
        let worker = try Worker(redisURL: redis.url, local: try Self.local(nil), metrics: Metrics())
        try waitUntil("the worker is connected to Redis") { worker.isReady }
        let rules = try Self.local(rate, reserve: reserve).rules
        let testClock = "local now = tonumber(ARGV[#ARGV])\n"
        let grantScript = Array((RateBudgetScript.state + testClock + RateBudgetScript.grantBody).utf8)
        let observeScript = Array((RateBudgetScript.state + testClock + RateBudgetScript.observeBody).utf8)
        var random = SplitMix64(seed: UInt64(rules.capacity) &+ UInt64(reserve.utf8.count))
        var state = RateBudgetState(rules: rules)
        var now: Int64 = 1_800_000_000_000
        // Steps of a quarter of the horizon: refills, expiring caps and ending blocks all happen.
        let step = rules.remainingHorizonMilliseconds / 4

        for index in 0..<200 {
            // Mostly forward, sometimes not at all, now and then a step back (a clock step).
            switch random.next() % 10 {
            case 0: now -= Int64(random.next() % UInt64(step))
            case 1: break
            default: now += Int64(random.next() % UInt64(step))
            }
            var arguments: [[UInt8]]
            var expected: BudgetDecision?
            if random.next() % 5 < 3 {
                let wanted = Int(random.next() % 5) + 1
                let priority: AdmissionPriority = random.next() % 2 == 0 ? .interactive : .warming
                expected = state.take(upTo: Int64(wanted), for: priority, rules: rules, now: now)
                arguments = RateBudgetScript.grant(upTo: wanted, for: priority, rules: rules)
                arguments[1] = grantScript
            } else {
                let observation = RateLimitObservation(
                    limit: random.next() % 2 == 0 ? nil : Int(random.next() % 30),
                    remaining: random.next() % 4 == 0 ? nil : Int(random.next() % 12),
                    blockedForSeconds: random.next() % 5 == 0 ? Int(random.next() % 4) : nil)
                guard let recorded = rules.recording(observation) else { continue }
                state.observe(recorded, rules: rules, now: now)
                arguments = RateBudgetScript.observe(recorded, rules: rules)
                arguments[1] = observeScript
            }
            arguments.append(Array(String(now).utf8))
            let reply = try worker.send(arguments)
            if let expected {
                let tokens = expected.tokensLeft ?? -1
                #expect(reply == .success(.array([.integer(expected.granted), .integer(expected.waitMilliseconds), .integer(tokens)])),
                        "step \(index)")
            } else {
                #expect(reply == .success(.integer(1)), "step \(index)")
            }
            let stored = try worker.send(["HMGET", "pe:rate-budget", "tokens", "refilled_at", "remaining", "remaining_until",
                                          "remaining_reserve", "blocked_until"].map { Array($0.utf8) })
            #expect(Self.state(stored) == state, "step \(index)")
        }
    }

    static func state(_ reply: Result<RedisReply, RedisError>) -> RateBudgetState? {
        guard case .success(.array(let fields)) = reply, fields.count == 6 else { return nil }
        let numbers = fields.compactMap { field -> Int64? in
            guard case .bulk(let bytes) = field, let value = Double(String(decoding: bytes, as: UTF8.self)) else { return nil }
            return Int64(exactly: value)
        }
        guard numbers.count == 6 else { return nil }
        var state = RateBudgetState(rules: RateBudgetRules(setting: nil, reserve: .standard))
        (state.tokens, state.refilledAt, state.remaining) = (numbers[0], numbers[1], numbers[2])
        (state.remainingUntil, state.remainingReserve, state.blockedUntil) = (numbers[3], numbers[4], numbers[5])
        return state
    }
}

