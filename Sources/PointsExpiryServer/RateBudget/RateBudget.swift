import EventLoop
import Logging
import RedisClient
import Voucherify

/// One worker's door to the upstream rate budget that every replica shares in Redis
/// (`RateBudgetScript`), with this replica's `LocalRateBudget` standing in while Redis cannot be
/// asked. Hand `interactive` to member reads and `warming` to WarmMembers.
///
/// Callers that find no token wait in line, first come first served per priority and worker,
/// each bounded by its deadline: one script asks for tokens for the head of the line (up to
/// `maxBatch` callers at once), and when the budget answers "the next token is due in t ms",
/// every caller whose deadline comes before that is refused at once (with that retry-after)
/// and the rest wait for a timer, not by polling. Loop-confined.
final class RateBudget {
    /// Callers waiting on one worker, both priorities together; more are refused at once.
    static let maxWaiters = 10_000
    /// Callers one script may admit at once (a batch of misses needs one Redis round trip).
    static let maxBatch = 64

    private let loop: Loop
    private let redis: RedisConnection
    private let local: LocalRateBudget
    private let metrics: Metrics.RateBudgetCounters
    private let logger: Logger
    private let interactiveLine: Line
    private let warmingLine: Line
    private var waiters = 0
    /// Redis could not decide last time: logged once per switch, not per call.
    private var onLocalBudget = false
    private var closed = false

    init(loop: Loop, redis: RedisConnection, local: LocalRateBudget, metrics: Metrics, logger: Logger) throws {
        loop.assertInLoop()
        self.loop = loop
        self.redis = redis
        self.local = local
        self.metrics = metrics.rateBudget
        self.logger = logger
        interactiveLine = Line(priority: .interactive, timer: try Timer(loop: loop))
        warmingLine = Line(priority: .warming, timer: try Timer(loop: loop))
    }

    deinit { close() }

    /// For interactive reads (GetMemberExpiration, BatchGetMemberExpirations). Each access makes
    /// a small object that keeps this budget alive: take it once.
    var interactive: any UpstreamAdmission { Admission(budget: self, priority: .interactive) }
    /// For WarmMembers: admitted only while it leaves the interactive reserve untouched.
    var warming: any UpstreamAdmission { Admission(budget: self, priority: .warming) }

    /// Refuses everyone still waiting (`unavailable`: shutting down) and every later call.
    func close() {
        loop.assertInLoop()
        guard !closed else { return }
        closed = true
        var answers: [Answer] = []
        for line in [interactiveLine, warmingLine] {
            line.timer.cancel()
            answers += line.waiting.map { ($0.completion, .failure(.unavailable("shutting down"))) }
            line.waiting.removeAll()
        }
        waiters = 0
        deliver(answers)
    }

    fileprivate typealias Completion = (Result<Void, VoucherifyError>) -> Void
    private typealias Answer = (Completion, Result<Void, VoucherifyError>)

    private struct Waiter {
        let deadline: Int64
        let completion: Completion
        /// Counted in the waits metric once, however many times it is told to wait.
        var hasWaited = false
    }

    /// The callers of one priority on this worker, oldest first.
    private final class Line {
        let priority: AdmissionPriority
        let timer: Timer
        var waiting: [Waiter] = []
        /// A grant script is on its way: its answer serves the head of the line.
        var asking = false
        /// While the timer is armed: when the budget said the next token is due (monotonic ms).
        var nextTokenAt: Int64 = 0

        init(priority: AdmissionPriority, timer: Timer) {
            self.priority = priority
            self.timer = timer
        }
    }

    private func line(_ priority: AdmissionPriority) -> Line { priority == .warming ? warmingLine : interactiveLine }

    fileprivate func admit(_ priority: AdmissionPriority, deadline: Int64, completion: @escaping Completion) {
        loop.assertInLoop()
        guard !closed else { return completion(.failure(.unavailable("shutting down"))) }
        let line = line(priority)
        let now = loop.monotonicMilliseconds
        if priority == .warming, local.rules.warmingNeverFits {
            return refuse(priority, completion, waitMilliseconds: local.rules.unitsPerToken)
        }
        if line.timer.isArmed, line.nextTokenAt > deadline {
            return refuse(priority, completion, waitMilliseconds: line.nextTokenAt - now)
        }
        // A full line says nothing about when a token is due: try again in a second.
        guard waiters < Self.maxWaiters else { return refuse(priority, completion, waitMilliseconds: 1) }
        line.waiting.append(Waiter(deadline: deadline, completion: completion))
        waiters += 1
        serve(line)
    }

    fileprivate func observe(_ observation: RateLimitObservation) {
        loop.assertInLoop()
        guard let recorded = local.rules.recording(observation) else { return }
        local.observe(recorded, now: loop.monotonicMilliseconds)
        guard redis.isReady else { return }
        redis.send(RateBudgetScript.observe(recorded, rules: local.rules)) { [logger] result in
            if case .success(.integer(1)) = result { return }
            let failure = logger.summarise(result)
            // A block other replicas did not hear of costs them a 429 each; a remaining, little.
            logger.log(level: recorded.blockedForMilliseconds > 0 ? .warning : .debug,
                       "could not share Voucherify's rate-limit headers through Redis", metadata: ["error": "\(failure)"])
        }
    }

    /// Asks the budget for the head of `line` until the line is empty, waits for a timer, or
    /// waits for Redis' answer.
    private func serve(_ line: Line) {
        while !closed, !line.asking, !line.timer.isArmed, !line.waiting.isEmpty {
            let wanted = min(line.waiting.count, Self.maxBatch)
            guard redis.isReady else {
                settle(line, wanted: wanted, decision: localDecision(wanted, line.priority, reason: "not connected"))
                continue
            }
            line.asking = true
            redis.send(RateBudgetScript.grant(upTo: wanted, for: line.priority, rules: local.rules)) { [self] result in
                line.asking = false
                guard !closed else { return }
                settle(line, wanted: wanted, decision: decision(result, wanted: wanted, line.priority))
                serve(line)
            }
        }
    }

    private func decision(_ result: Result<RedisReply, RedisError>, wanted: Int, _ priority: AdmissionPriority) -> BudgetDecision {
        if case .success(.array(let items)) = result, let decision = Self.grantReply(items, wanted: wanted) {
            if onLocalBudget {
                onLocalBudget = false
                logger.info("rate budget shared through Redis again")
            }
            local.spend(decision.granted, now: loop.monotonicMilliseconds)
            return decision
        }
        return localDecision(wanted, priority, reason: logger.summarise(result))
    }

    /// The grant script's `{granted, wait ms, tokens or -1}`, checked: a reply that would admit
    /// more than asked, or leave callers waiting for no time, is not believed.
    private static func grantReply(_ items: [RedisReply], wanted: Int) -> BudgetDecision? {
        guard items.count == 3, case .integer(let granted) = items[0], case .integer(let wait) = items[1],
              case .integer(let tokens) = items[2], (0...Int64(wanted)).contains(granted), wait >= 0,
              granted == Int64(wanted) || wait > 0 else { return nil }
        return BudgetDecision(granted: granted, waitMilliseconds: wait, tokensLeft: tokens >= 0 ? tokens : nil)
    }

    private func localDecision(_ wanted: Int, _ priority: AdmissionPriority, reason: String) -> BudgetDecision {
        if !onLocalBudget {
            onLocalBudget = true
            logger.warning("Redis cannot decide the shared rate budget; this replica uses its own until it can",
                           metadata: ["reason": "\(reason)"])
        }
        metrics.localDecisions.increment()
        return local.take(upTo: Int64(wanted), for: priority, now: loop.monotonicMilliseconds)
    }

    /// Admits the first `decision.granted` callers; when the next token is due later, refuses at
    /// once everyone whose deadline comes before it and sets the timer for the rest.
    private func settle(_ line: Line, wanted: Int, decision: BudgetDecision) {
        if let tokens = decision.tokensLeft { metrics.sawTokens(tokens) }
        var answers: [Answer] = []
        let granted = Int(decision.granted)
        for waiter in line.waiting.prefix(granted) {
            metrics.granted(line.priority)
            answers.append((waiter.completion, .success(())))
        }
        line.waiting.removeFirst(granted)
        if granted < wanted {
            let (sum, overflow) = loop.monotonicMilliseconds.addingReportingOverflow(decision.waitMilliseconds)
            let due = overflow ? Int64.max : sum
            var staying: [Waiter] = []
            staying.reserveCapacity(line.waiting.count)
            for var waiter in line.waiting {
                if waiter.deadline < due {
                    metrics.refused(line.priority)
                    answers.append((waiter.completion, .failure(.rateLimited(retryAfterSeconds: Self.seconds(decision.waitMilliseconds)))))
                } else {
                    if !waiter.hasWaited { metrics.waited(line.priority) }
                    waiter.hasWaited = true
                    staying.append(waiter)
                }
            }
            line.waiting = staying
            if !staying.isEmpty { arm(line, due: due, in: decision.waitMilliseconds, answers: &answers) }
        }
        waiters -= answers.count
        // Last: a completion may call `admit` again, and must find the lines consistent.
        deliver(answers)
    }

    private func arm(_ line: Line, due: Int64, in milliseconds: Int64, answers: inout [Answer]) {
        do {
            try line.timer.arm(milliseconds: Int(clamping: milliseconds)) { [unowned self] in
                line.nextTokenAt = 0
                serve(line)
            }
            line.nextTokenAt = due
        } catch {
            logger.error("could not arm the rate budget's timer; refusing its waiting calls", metadata: ["error": "\(error)"])
            for waiter in line.waiting {
                metrics.refused(line.priority)
                answers.append((waiter.completion, .failure(.rateLimited(retryAfterSeconds: Self.seconds(milliseconds)))))
            }
            line.waiting.removeAll()
        }
    }

    private func refuse(_ priority: AdmissionPriority, _ completion: Completion, waitMilliseconds: Int64) {
        metrics.refused(priority)
        completion(.failure(.rateLimited(retryAfterSeconds: Self.seconds(waitMilliseconds))))
    }

    private func deliver(_ answers: [Answer]) {
        for (completion, result) in answers { completion(result) }
    }

    /// Whole seconds, rounded up, at least 1: what a retry-after header can say.
    static func seconds(_ milliseconds: Int64) -> Int {
        Int(clamping: max(1, milliseconds / 1000 + (milliseconds % 1000 > 0 ? 1 : 0)))
    }
}

/// One priority's face of a `RateBudget`: what `VoucherifyAPI` asks before each call.
private final class Admission: UpstreamAdmission {
    private let budget: RateBudget
    private let priority: AdmissionPriority

    init(budget: RateBudget, priority: AdmissionPriority) {
        self.budget = budget
        self.priority = priority
    }

    func admit(deadline: Int64, completion: @escaping (Result<Void, VoucherifyError>) -> Void) {
        budget.admit(priority, deadline: deadline, completion: completion)
    }

    func observe(_ observation: RateLimitObservation) {
        budget.observe(observation)
    }
}
