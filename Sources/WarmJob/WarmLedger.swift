/// The warm job's bookkeeping: which members wait, which are in which call, what became of each,
/// when the next call may go, and the exit code. Pure: the caller passes the time (monotonic
/// milliseconds) and the calls' outcomes, so every rule is tested without a network or a clock.
///
/// Members are sent fresh ones first, then the ones to retry (deferred by the service, or in a
/// call that failed in a way worth retrying). A call that got nowhere (all deferred, or a
/// retryable error) pauses sending with a growing backoff, or for the service's `retry-after`,
/// so a service short of budget is not asked again at once.
public struct WarmLedger: Sendable {
    public enum StopReason: Sendable {
        /// The job's `--timeout` came: what is left is `deferred`.
        case timedOut
        /// SIGINT/SIGTERM, or a problem that ends the job: what is left is `cancelled`.
        case interrupted

        /// The `error` column of `--failed-out` for the members it left not done.
        public var error: String { self == .timedOut ? "deferred" : "cancelled" }

        var message: String {
            self == .timedOut ? "not reached before the job's timeout" : "the job was stopped before it was reached"
        }
    }

    /// A problem that ends the job with exit code 2: the job could not run at all.
    public enum FatalProblem: Equatable, Sendable {
        /// A call could not connect and no call ever had; or an exchange broke right after
        /// connecting before any was held (no HTTP/2 spoken there).
        case unreachable(String)
        /// The service answered `unimplemented`: it has no WarmMembers.
        case unsupported(String)
    }

    public struct Batch: Equatable, Sendable {
        public let id: Int
        public let members: [String]
        /// When the call went out (monotonic milliseconds).
        public let sentAt: Int64
    }

    public struct NotDoneMember: Equatable, Sendable {
        public var member: String
        public var reason: StopReason
    }

    /// Distinct members of the input.
    public let requested: Int
    public private(set) var warmed = 0
    public private(set) var alreadyFresh = 0
    public private(set) var failures: [MemberFailure] = []
    public private(set) var notDone: [NotDoneMember] = []
    public private(set) var stopReason: StopReason?
    public private(set) var fatalProblem: FatalProblem?

    private let batchSize: Int
    private var fresh: MemberQueue
    private var retries = MemberQueue()
    private var inFlight: [Int: Batch] = [:]
    private var lastBatchID = 0
    /// Some call connected to the service (it may still be running): a failure to connect is
    /// then a passing problem, not a wrong `--service`.
    private var connectedToService = false
    /// Some call held an exchange with the service: it answered, or kept the call open until a
    /// timeout. Until then an exchange that breaks right after connecting means no HTTP/2 there.
    private var exchangeHeld = false
    /// Calls in a row that got nowhere; sets the backoff.
    private var callsWithoutProgress = 0
    /// No call is started before this instant.
    public private(set) var pausedUntil: Int64 = .min

    /// The pause after a call without progress; each further one in a row doubles it, up to
    /// `maxPauseMilliseconds`. A service's `retry-after` replaces it.
    public static let firstPauseMilliseconds: Int64 = 500
    public static let maxPauseMilliseconds: Int64 = 30_000

    /// Members longer than `maxMemberBytes` fail at once with `invalid_argument`: the service
    /// would refuse the whole call for them.
    public init(members: [String], batchSize: Int, maxMemberBytes: Int = WarmConfiguration.maxValueBytes) {
        precondition(batchSize > 0, "a batch holds at least one member")
        requested = members.count
        self.batchSize = batchSize
        var sendable: [String] = []
        for member in members {
            if member.utf8.count > maxMemberBytes {
                failures.append(MemberFailure(member: member, code: "invalid_argument",
                                              message: "longer than \(maxMemberBytes) bytes; not sent"))
            } else {
                sendable.append(member)
            }
        }
        fresh = MemberQueue(sendable)
    }

    // MARK: sending

    /// The next call's members, or nil when none may be sent now (nothing waits, the job has
    /// stopped, or sending is paused until `pausedUntil`).
    public mutating func nextBatch(now: Int64) -> Batch? {
        guard stopReason == nil, now >= pausedUntil else { return nil }
        let members = fresh.isEmpty ? retries.take(batchSize) : fresh.take(batchSize)
        guard !members.isEmpty else { return nil }
        lastBatchID += 1
        let batch = Batch(id: lastBatchID, members: members, sentAt: now)
        inFlight[lastBatchID] = batch
        return batch
    }

    /// When a call could be sent that cannot be sent now: nil when nothing waits to be sent or
    /// the job has stopped (then only calls in flight can change anything).
    public var resumesAt: Int64? {
        guard stopReason == nil, !fresh.isEmpty || !retries.isEmpty else { return nil }
        return pausedUntil
    }

    public var callsInFlight: Int { inFlight.count }

    /// Nothing in flight, and nothing left to send (or the job stopped).
    public var isFinished: Bool {
        inFlight.isEmpty && (stopReason != nil || (fresh.isEmpty && retries.isEmpty))
    }

    // MARK: outcomes

    public mutating func record(_ outcome: WarmCallOutcome, for batch: Batch, now: Int64) {
        guard let members = inFlight.removeValue(forKey: batch.id)?.members else { return }
        switch outcome {
        case .answered(let answer):
            recordExchange()
            let progressed = recordAnswer(answer, members: members)
            if progressed { callsWithoutProgress = 0 } else { pause(now: now, retryAfterSeconds: nil) }
        case .rejected(let code, let message):
            recordExchange()
            callsWithoutProgress = 0
            failures += members.map { MemberFailure(member: $0, code: code, message: message) }
        case .retryable(_, _, let retryAfterSeconds):
            recordExchange()
            requeue(members)
            pause(now: now, retryAfterSeconds: retryAfterSeconds)
        case .notConnected(let message):
            guard connectedToService else { return end(with: .unreachable(message), members: members) }
            requeue(members)
            pause(now: now, retryAfterSeconds: nil)
        case .broken(let message):
            // An HTTP/1.1-only peer breaks the h2c preface as soon as it reads it. Once a call
            // has held an exchange (this one or one still in flight, for longer than a connect
            // may take), the peer speaks HTTP/2, and a dropped connection is worth retrying.
            let heldOne = exchangeHeld || ranPastConnectTimeout(batch, now: now)
                || inFlight.values.contains { ranPastConnectTimeout($0, now: now) }
            guard heldOne else {
                return end(with: .unreachable("\(message), right after connecting (does the service speak HTTP/2 there?)"), members: members)
            }
            recordConnectionToService()
            requeue(members)
            pause(now: now, retryAfterSeconds: nil)
        case .unsupported(let message):
            end(with: .unsupported(message), members: members)
        }
    }

    /// A call in flight has connected: learnt from the transfer, before its outcome.
    public mutating func recordConnectionToService() {
        connectedToService = true
    }

    /// A call still going past the connect timeout has connected, and its exchange has held.
    private func ranPastConnectTimeout(_ batch: Batch, now: Int64) -> Bool {
        now - batch.sentAt >= Int64(WarmMembersCall.connectMilliseconds)
    }

    private mutating func recordExchange() {
        connectedToService = true
        exchangeHeld = true
    }

    /// True when the call got anywhere: a member warmed, fresh or failed.
    private mutating func recordAnswer(_ answer: WarmAnswer, members: [String]) -> Bool {
        // Only the call's own members count, each once, whatever the answer lists.
        var unaccounted = Set(members)
        for failure in answer.failed where unaccounted.remove(failure.member) != nil {
            failures.append(failure)
        }
        let deferred = answer.deferred.filter { unaccounted.remove($0) != nil }
        requeue(deferred)
        // The rest were handled. The service's counts split them; counts that fall short (a
        // broken answer) leave members it did not list as failed or deferred: those were warmed.
        let handled = unaccounted.count
        let warmedNow = min(answer.warmed, handled)
        let freshNow = min(answer.alreadyFresh, handled - warmedNow)
        alreadyFresh += freshNow
        warmed += handled - freshNow
        return deferred.count < members.count
    }

    private mutating func requeue(_ members: [String]) {
        if let stopReason {
            notDone += members.map { NotDoneMember(member: $0, reason: stopReason) }
        } else {
            retries.append(members)
        }
    }

    private mutating func pause(now: Int64, retryAfterSeconds: Int?) {
        callsWithoutProgress += 1
        let backoff = Self.firstPauseMilliseconds << Int64(min(callsWithoutProgress - 1, 16))
        // retry-after comes from the network: clamped to the service's own cap on a call.
        let longest = WarmMembersCall.maxCallMilliseconds
        let delay = retryAfterSeconds.map { min(Int64(clamping: max(0, $0)), longest / 1000) * 1000 } ?? min(backoff, Self.maxPauseMilliseconds)
        pausedUntil = max(pausedUntil, now + delay)
    }

    private mutating func end(with problem: FatalProblem, members: [String]) {
        if fatalProblem == nil { fatalProblem = problem }
        stop(.interrupted)
        requeue(members)
    }

    // MARK: stopping

    /// No new calls; everything not sent yet is left not done. Calls in flight still count.
    public mutating func stop(_ reason: StopReason) {
        guard stopReason == nil else { return }
        stopReason = reason
        notDone += (fresh.takeAll() + retries.takeAll()).map { NotDoneMember(member: $0, reason: reason) }
    }

    /// Gives up on the calls in flight (a second Ctrl-C, or a fatal problem): their members are
    /// left not done, and their answers, if any still come, are ignored.
    public mutating func abandonCallsInFlight() {
        let reason = stopReason ?? .interrupted
        stop(reason)
        for batchID in inFlight.keys.sorted() {
            notDone += inFlight[batchID]?.members.map { NotDoneMember(member: $0, reason: reason) } ?? []
        }
        inFlight.removeAll()
    }

    // MARK: results

    /// 0: every member warm or already fresh; 1: some failed or were left not done; 2: the job
    /// could not run (service unreachable, or without WarmMembers).
    public var exitCode: Int32 {
        if fatalProblem != nil { return 2 }
        return failures.isEmpty && notDone.isEmpty ? 0 : 1
    }

    public func progress(elapsedMilliseconds: Int64) -> WarmProgress {
        WarmProgress(requested: requested, warmed: warmed, alreadyFresh: alreadyFresh, failed: failures.count,
                     notDone: notDone.count, elapsedMilliseconds: elapsedMilliseconds)
    }

    /// Rows of the `--failed-out` file (`code,error,message`): every failed member, then every
    /// member left not done.
    public var failedOutRows: [[String]] {
        failures.map { [$0.member, $0.code, $0.message] }
            + notDone.map { [$0.member, $0.reason.error, $0.reason.message] }
    }
}

/// First-in first-out member codes; taking from the front is O(taken).
private struct MemberQueue: Sendable {
    private var items: [String]
    private var head = 0

    init(_ items: [String] = []) { self.items = items }

    var isEmpty: Bool { head == items.count }

    mutating func append(_ members: [String]) {
        if isEmpty {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        items += members
    }

    mutating func take(_ count: Int) -> [String] {
        let end = min(items.count, head + count)
        defer { head = end }
        return Array(items[head..<end])
    }

    mutating func takeAll() -> [String] { take(items.count - head) }
}
