import EventLoop
import ExpiryDomain
import Logging
import RPC
import RedisClient
import Voucherify

/// One member's answer, with where it came from.
struct MemberAnswer {
    enum Source: String {
        case hit
        case miss
        case stale
    }

    let answer: CachedAnswer
    let source: Source
    let ageSeconds: Int64
    /// Where the answer's gzip form is kept, for an answer the worker's tier holds.
    let gzipMemo: GzipMemo?

    init(answer: CachedAnswer, source: Source, ageSeconds: Int64, gzipMemo: GzipMemo? = nil) {
        self.answer = answer
        self.source = source
        self.ageSeconds = ageSeconds
        self.gzipMemo = gzipMemo
    }

    /// Aged from the record's `fetchedAt` to `now`.
    init(answer: CachedAnswer, source: Source, now: Timestamp) {
        self.init(answer: answer, source: source, ageSeconds: MemberAnswerPolicy.ageSeconds(since: answer.fetchedAt, now: now))
    }

    /// `x-cache` and `age`, as every RPC that answers a member sends them.
    var cacheHeaders: [(name: String, value: String)] { Self.cacheHeaders(source, ageSeconds: ageSeconds) }

    /// `x-cache` and `age`, as every cached answer (a member's, a campaign's) carries them.
    static func cacheHeaders(_ source: Source, ageSeconds: Int64) -> [(name: String, value: String)] {
        [("x-cache", source.rawValue), ("age", String(ageSeconds))]
    }
}

/// The resolver every member-reading RPC goes through: Redis first, then at most one Voucherify
/// read per member and campaign spelling for the whole fleet, as `MemberAnswerPolicy` decides.
/// This half does the I/O and the waiting; the rules live in the policy. Loop-confined: one
/// per worker.
///
/// A read is a `MemberFlight`: callers of this worker join it; across workers and replicas the
/// Redis read lease (`MemberCache.claimLease`) decides who reads, and the others poll for the
/// fill every few milliseconds. A read is bounded by its lease, not by its callers: a caller
/// that gives up leaves it running, and it still fills the cache.
final class MemberAnswers {
    private let loop: Loop
    private let cache: MemberCache
    /// This worker's copy of recent Redis records (hits without a Redis round trip).
    private let tier: LocalTier
    /// Every worker's tier, for invalidations.
    private let tiers: LocalTierDirectory
    private let voucherify: VoucherifyAPI
    private let budget: UpstreamAdmission
    private let warmingBudget: UpstreamAdmission
    private let warmingSlots: WarmingSlots
    private let policy: MemberAnswerPolicy
    private let lifecycle: WorkerLifecycle
    private let metrics: Metrics
    private let logger: Logger
    private var flights: [FlightKey: MemberFlight] = [:]

    /// A read ends a second before its lease expires, so no other reader can start beside it.
    private static let readMilliseconds = MemberCache.leaseMilliseconds - 1000
    /// Polling for another reader's fill: start fast (a hit is a millisecond away), back off to
    /// this, so a slow read costs a waiting worker a few Redis calls a second.
    private static let maxPollMilliseconds = 40
    /// Warming reads in flight per worker: the rest of the worker's upstream transfers
    /// (`CurlMulti`'s 32) stay free for callers, so a warm never queues their reads behind its own.
    static let maxWarmingReads = 8

    /// `budget` admits callers' reads, `warmingBudget` WarmMembers' reads (only above the
    /// interactive reserve).
    init(loop: Loop, cache: MemberCache, tier: LocalTier, tiers: LocalTierDirectory, voucherify: VoucherifyAPI, budget: UpstreamAdmission, warmingBudget: UpstreamAdmission,
         policy: MemberAnswerPolicy, lifecycle: WorkerLifecycle, metrics: Metrics, logger: Logger) {
        self.loop = loop
        self.cache = cache
        self.tier = tier
        self.tiers = tiers
        self.voucherify = voucherify
        self.budget = budget
        self.warmingBudget = warmingBudget
        warmingSlots = WarmingSlots(capacity: Self.maxWarmingReads)
        self.policy = policy
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.logger = logger
    }

    private var now: Timestamp { Timestamp(millisecondsSince1970: loop.nowMilliseconds) }
    private static let deadlineExceeded = RPCError(.deadlineExceeded, "no answer from Voucherify within the call's deadline")

    /// The answer for `member` under `campaign` as the caller spelled it, waiting no later than
    /// `deadline` (monotonic ms). Completes once, on the loop.
    func answer(campaign: String, member: String, directives: CacheDirectives, deadline: Int64, record: RequestRecord? = nil,
                completion: @escaping (Result<MemberAnswer, RPCError>) -> Void) {
        loop.assertInLoop()
        // Answered here and now, without Redis, while the record is fresh. Anything else asks
        // Redis, which may hold a newer one.
        if let held = tier.servable(campaign: campaign, member: member),
           case .serve(let fresh, let age) = policy.decide(held.entry, directives: directives, now: now) {
            metrics.localCache.hits.increment()
            return serve(fresh, ageSeconds: age, gzipMemo: held.gzipMemo(in: tier, member: member), campaign: campaign, member: member,
                         completion: completion)
        }
        let ticket = tier.fillTicket()
        cache.lookup(campaign: campaign, member: member) { [self] lookup in
            let entry: CacheEntry?
            var fromTier = false
            switch lookup {
            case .found(let found):
                entry = found
                keep(found, campaign: campaign, member: member, ticket: ticket)
            case .absent:
                entry = nil
                keep(nil, campaign: campaign, member: member, ticket: ticket)
            case .unavailable:
                if let ticket { tier.returnTicket(ticket) }
                metrics.cacheUnavailable.increment()
                // Redis cannot be asked: what this worker holds still answers inside its windows.
                entry = tier.fallback(campaign: campaign, member: member)?.entry
                fromTier = entry != nil
            }
            switch policy.decide(entry, directives: directives, now: now) {
            case .serve(let fresh, let age):
                serve(fresh, ageSeconds: age, gzipMemo: nil, campaign: campaign, member: member, completion: completion)
            case .serveStaleAndRefresh(let answer, let age):
                metrics.cacheResults.increment("stale")
                completion(.success(MemberAnswer(answer: answer, source: .stale, ageSeconds: age)))
                // A record only the tier holds is refreshed only while the tier keeps the read
                // (tracking off): otherwise Redis, not answering, could store nothing of it.
                if !fromTier || !tier.isTracking { refresh(FlightKey(campaign: campaign, member: member), seen: entry) }
            case .read(let fallback):
                join(FlightKey(campaign: campaign, member: member), seen: entry, usesCache: lookup.isUsable, waiter: FlightWaiter(deadline: deadline, fallback: fallback, record: record, completion: completion))
            }
        }
    }

    /// A fresh record answers: an answer (hit) or a remembered not-found.
    private func serve(_ entry: CacheEntry, ageSeconds: Int64, gzipMemo: GzipMemo?, campaign: String, member: String,
                       completion: (Result<MemberAnswer, RPCError>) -> Void) {
        switch entry {
        case .answer(let answer):
            metrics.cacheResults.increment("hit")
            completion(.success(MemberAnswer(answer: answer, source: .hit, ageSeconds: ageSeconds, gzipMemo: gzipMemo)))
        case .notFound(let notFound):
            metrics.cacheResults.increment("negative")
            completion(.failure(notFound.subject.error.rpcError(campaign: campaign, member: member)))
        }
    }

    /// Keeps what Redis just answered (a record, or nil for none) in the tier under `ticket`,
    /// unless an invalidation of the member arrived meanwhile.
    private func keep(_ entry: CacheEntry?, campaign: String, member: String, ticket: LocalTier.FillTicket?) {
        guard let ticket else { return }
        let kept = tier.fill(campaign: campaign, member: member, entry: entry, ticket: ticket)
        if entry != nil, ticket.whileTracking { metrics.localCache.fills.increment(kept ? "kept" : "discarded") }
    }

    /// A read made without Redis: while the tier cannot hear invalidations (Redis unreachable for
    /// it too), the worker keeps what it read as its fallback, so the next callers need not read
    /// it again; while tracking is on the tier holds only Redis' records.
    private func keepOwnRead(_ entry: CacheEntry, campaign: String, member: String, ticket: LocalTier.FillTicket?) {
        guard let ticket else { return }
        guard !ticket.whileTracking else { return tier.returnTicket(ticket) }
        tier.fill(campaign: campaign, member: member, entry: entry, ticket: ticket)
    }

    /// Drops `member`'s answers under every campaign spelling: in Redis (fencing refills in flight;
    /// with `eventID`, once per webhook event), then from every worker's tier in this process,
    /// whatever Redis said, and only then completes, on this loop.
    func invalidate(member: String, eventID: String?, completion: @escaping (Result<InvalidationOutcome, RedisError>) -> Void) {
        loop.assertInLoop()
        cache.invalidate(member: member, eventID: eventID) { [self] result in
            tiers.drop(member: member, from: loop) { completion(result) }
        }
    }

    /// Warms `member` under `campaign`: reads it from Voucherify unless its cached answer is fresh
    /// (or always, with `force`), at warming priority, and stores it like any read (fenced, under
    /// the lease). Gives up at `deadline` (monotonic ms): a member not read by then is deferred,
    /// and so is one whose warm no longer wants it (`isWanted`, asked when its slot comes).
    func warm(campaign: String, member: String, force: Bool, deadline: Int64, isWanted: @escaping () -> Bool,
              completion: @escaping (WarmOutcome) -> Void) {
        loop.assertInLoop()
        cache.lookup(campaign: campaign, member: member) { [self] lookup in
            var entry: CacheEntry?
            switch lookup {
            case .found(let found): entry = found
            case .absent: break
            case .unavailable:
                // A read nobody can store warms nothing.
                metrics.cacheUnavailable.increment()
                return completion(.failed(.cacheUnavailable("Redis did not answer the lookup")))
            }
            if !force, case .serve(let fresh, _) = policy.decide(entry, directives: .none, now: now) {
                switch fresh {
                case .answer: return completion(.alreadyFresh)
                case .notFound(let notFound): return completion(.failed(notFound.subject.error.rpcError(campaign: campaign, member: member)))
                }
            }
            warmingSlots.acquire(deadline: deadline, now: loop.monotonicMilliseconds) { [self] granted in
                guard granted else { return completion(.deferred) }
                guard isWanted() else {
                    warmingSlots.release(now: loop.monotonicMilliseconds)
                    return completion(.deferred)
                }
                warmRead(FlightKey(campaign: campaign, member: member), seen: entry, deadline: deadline) { [self] outcome in
                    warmingSlots.release(now: loop.monotonicMilliseconds)
                    completion(outcome)
                }
            }
        }
    }

    /// Joins the member's flight, or takes a warming token and starts one. The token comes
    /// first, so a flight callers may join never waits behind the warming line.
    private func warmRead(_ key: FlightKey, seen: CacheEntry?, deadline: Int64, completion: @escaping (WarmOutcome) -> Void) {
        let waiter = FlightWaiter(deadline: deadline, fallback: nil, isWarming: true) { result in completion(WarmOutcome(result)) }
        if let flight = flights[key] {
            flight.waiters.append(waiter)
            return
        }
        warmingBudget.admit(deadline: deadline) { [self] admitted in
            if case .failure(let error) = admitted {
                return completion(WarmOutcome(.failure(error.rpcError(campaign: key.campaign, member: key.member))))
            }
            if let flight = flights[key] {
                flight.waiters.append(waiter) // someone started it meanwhile; the token goes unused
                return
            }
            let flight = MemberFlight(key: key, seen: seen, usesCache: true)
            flight.startedByWarm = true
            flight.preAdmitted = true
            flight.waiters.append(waiter)
            flights[key] = flight
            start(flight)
        }
    }

    // MARK: Flights

    private func join(_ key: FlightKey, seen: CacheEntry?, usesCache: Bool, waiter: FlightWaiter) {
        if let flight = flights[key] {
            metrics.singleFlightJoins.increment("worker")
            flight.waiters.append(waiter)
            return
        }
        let flight = MemberFlight(key: key, seen: seen, usesCache: usesCache)
        flight.waiters.append(waiter)
        flights[key] = flight
        start(flight)
    }

    /// Stale-while-revalidate: one background read unless one runs already (here or elsewhere).
    private func refresh(_ key: FlightKey, seen: CacheEntry?) {
        guard flights[key] == nil else { return }
        let flight = MemberFlight(key: key, seen: seen, usesCache: true)
        flights[key] = flight
        metrics.backgroundRefreshes.increment()
        start(flight)
    }

    private func start(_ flight: MemberFlight) {
        guard flight.usesCache else { return read(flight, lease: nil) }
        cache.claimLease(campaign: flight.key.campaign, member: flight.key.member, seenStamp: flight.seenStamp) { [self] claim in
            switch claim {
            case .claimed(let lease):
                read(flight, lease: lease)
            case .filled(let entry, let stamp):
                flight.seenStamp = stamp
                if case .read = policy.decide(entry, directives: .none, now: now) {
                    start(flight) // a record nobody may serve (past its deduction): read it again
                } else {
                    finish(flight, .filled(entry))
                }
            case .unreadable(let stamp):
                flight.seenStamp = stamp
                start(flight)
            case .held:
                if !flight.waitsForFleet {
                    flight.waitsForFleet = true
                    metrics.singleFlightJoins.increment("fleet")
                }
                poll(flight)
            case .failedRecently(let error):
                finish(flight, .failed(error))
            case .unavailable:
                read(flight, lease: nil)
            }
        }
    }

    /// Waits a little, then asks the lease again: the holder's fill, its failure, or our turn.
    private func poll(_ flight: MemberFlight) {
        let nowMonotonic = loop.monotonicMilliseconds
        // A slow read is an outage too: a caller out of time takes its stale answer if it has one.
        let now = now
        for late in flight.removeWaiters(pastDeadline: nowMonotonic) {
            answer(late, staleOr: Self.deadlineExceeded, after: .unavailable("timed out"), now: now)
        }
        guard let deadline = flight.latestDeadline else { return finish(flight, .abandoned) }
        let delay = min(flight.nextPollDelay(max: Self.maxPollMilliseconds), max(0, Int(clamping: deadline - nowMonotonic)))
        do {
            flight.pollTimer = try Timer.schedule(on: loop, after: delay) { [weak self, weak flight] in
                guard let self, let flight else { return }
                flight.pollTimer = nil
                start(flight)
            }
        } catch {
            logger.error("could not arm a poll timer; reading without waiting", metadata: ["error": "\(error)"])
            read(flight, lease: nil)
        }
    }

    /// Reads Voucherify; with a `lease`, stores the outcome (fenced) and releases the lease.
    private func read(_ flight: MemberFlight, lease: ReadLease?) {
        guard !lifecycle.stopped else {
            // Give the lease back: the fleet should not wait out its 10 s for a read never made.
            if let lease {
                cache.finishRead(campaign: flight.key.campaign, member: flight.key.member, lease: lease, record: nil, lifetimeMilliseconds: 0,
                                 failure: nil)
            }
            return finish(flight, .failed(.unavailable("the service is shutting down")))
        }
        let (campaign, member) = (flight.key.campaign, flight.key.member)
        let started = loop.monotonicMilliseconds
        let ticket = lease == nil ? tier.fillTicket() : nil
        let admission = FlightAdmission(flight: flight, interactive: budget, warming: warmingBudget, loop: loop)
        voucherify.fetchMemberBuckets(campaign: campaign, member: member, deadline: started + Self.readMilliseconds,
                                      admission: admission) { [self] result in
            let outcome: FlightOutcome
            switch result {
            case .success(let buckets):
                let expiration = MemberExpiration(campaign: campaign, member: member, buckets: buckets, fetchedAt: now)
                let (entry, lifetime) = policy.entry(for: expiration, jitterMilliseconds: .random(in: 0...policy.maxJitterMilliseconds))
                if let lease { cache.finishRead(campaign: campaign, member: member, lease: lease, record: entry, lifetimeMilliseconds: lifetime, failure: nil) }
                keepOwnRead(entry, campaign: campaign, member: member, ticket: ticket)
                outcome = .read(entry)
            case .failure(let error):
                if let subject = NotFoundSubject(error) {
                    let (entry, lifetime) = policy.notFoundEntry(subject, now: now)
                    if let lease { cache.finishRead(campaign: campaign, member: member, lease: lease, record: entry, lifetimeMilliseconds: lifetime, failure: nil) }
                    keepOwnRead(entry, campaign: campaign, member: member, ticket: ticket)
                    outcome = .read(entry)
                } else {
                    if let ticket { tier.returnTicket(ticket) }
                    // Only what Voucherify said (or a budget that made callers wait) warns the fleet
                    // off; a read that merely would not queue for budget leaves no marker.
                    let marker = admission.refusedWithoutWaiting ? nil : error
                    if let lease { cache.finishRead(campaign: campaign, member: member, lease: lease, record: nil, lifetimeMilliseconds: 0, failure: marker) }
                    outcome = .failed(error)
                }
            }
            finish(flight, outcome)
        }
    }

    private func finish(_ flight: MemberFlight, _ outcome: FlightOutcome) {
        flight.pollTimer?.cancel()
        if flights[flight.key] === flight { flights[flight.key] = nil }
        let waiters = flight.waiters
        flight.waiters = []
        let (campaign, member) = (flight.key.campaign, flight.key.member)
        let now = now
        for waiter in waiters {
            switch outcome {
            case .read(.answer(let answer)), .filled(.answer(let answer)):
                if !waiter.isWarming { metrics.cacheResults.increment("miss") }
                waiter.completion(.success(MemberAnswer(answer: answer, source: .miss, now: now)))
            case .read(.notFound(let notFound)), .filled(.notFound(let notFound)):
                if !waiter.isWarming { metrics.cacheResults.increment("negative") }
                waiter.completion(.failure(notFound.subject.error.rpcError(campaign: campaign, member: member)))
            case .failed(let error):
                answer(waiter, staleOr: error.rpcError(campaign: campaign, member: member), after: error, now: now)
            case .abandoned:
                waiter.completion(.failure(Self.deadlineExceeded))
            }
        }
    }

    /// A caller whose read failed (or who ran out of time): its stale answer when the policy
    /// allows one for `error`, else `failure`.
    private func answer(_ waiter: FlightWaiter, staleOr failure: RPCError, after error: VoucherifyError, now: Timestamp) {
        guard let stale = policy.staleFallback(waiter.fallback, after: error, now: now) else { return waiter.completion(.failure(failure)) }
        metrics.cacheResults.increment("stale")
        waiter.completion(.success(MemberAnswer(answer: stale, source: .stale, now: now)))
    }
}

/// One member and campaign spelling, as callers spell it: the unit of single-flight.
struct FlightKey: Hashable {
    let campaign: String
    let member: String
}

/// A caller waiting for a read.
struct FlightWaiter {
    let deadline: Int64
    /// The stale answer this caller may take while Voucherify cannot be asked.
    let fallback: CachedAnswer?
    /// WarmMembers, not a caller waiting for an answer.
    var isWarming = false
    /// The caller's access-log record: a flight's Voucherify calls count for its first waiter.
    var record: RequestRecord?
    let completion: (Result<MemberAnswer, RPCError>) -> Void
}

/// How warming one member ended.
enum WarmOutcome: Equatable {
    /// Read from Voucherify (here, or by another reader just now) and cached.
    case warmed
    /// Its cached answer was fresh; nothing was read.
    case alreadyFresh
    case failed(RPCError)
    /// Not reached before the deadline or for lack of rate budget: worth another try later.
    case deferred

    init(_ result: Result<MemberAnswer, RPCError>) {
        switch result {
        case .success: self = .warmed
        case .failure(let error) where error.code == .resourceExhausted || error.code == .deadlineExceeded: self = .deferred
        case .failure(let error): self = .failed(error)
        }
    }

    /// The metrics label.
    var label: String {
        switch self {
        case .warmed: "warmed"
        case .alreadyFresh: "already_fresh"
        case .failed: "failed"
        case .deferred: "deferred"
        }
    }
}

/// How a read ended.
private enum FlightOutcome {
    /// This worker read it.
    case read(CacheEntry)
    /// Another worker or replica read it.
    case filled(CacheEntry)
    case failed(VoucherifyError)
    /// Every caller gave up while another reader held the lease.
    case abandoned
}

/// One in-progress read and its waiters. Loop-confined (owned by `MemberAnswers`).
final class MemberFlight {
    let key: FlightKey
    var waiters: [FlightWaiter] = []
    /// The stamp of the record the flight started from: a different one is a fill.
    var seenStamp: [UInt8]
    /// False once Redis failed: read without the lease, store nothing.
    let usesCache: Bool
    var pollTimer: Timer?
    /// Counted once as a fleet join when it first found another reader's lease.
    var waitsForFleet = false
    /// WarmMembers started it (with a warming token taken for its first call: `preAdmitted`).
    var startedByWarm = false
    var preAdmitted = false
    private var pollDelay = 1

    /// `seen`: the record the flight's callers found (nil: none).
    init(key: FlightKey, seen: CacheEntry?, usesCache: Bool) {
        self.key = key
        seenStamp = seen.map { Array(CacheEntry.stamp(of: $0.serialized())) } ?? []
        self.usesCache = usesCache
    }

    var latestDeadline: Int64? { waiters.lazy.map(\.deadline).max() }

    /// 1, 2, 4, … ms up to `max`.
    func nextPollDelay(max: Int) -> Int {
        defer { pollDelay = min(pollDelay * 2, max) }
        return pollDelay
    }

    /// Takes out the callers past their deadline (the router may have answered them already;
    /// a second answer is ignored there).
    func removeWaiters(pastDeadline now: Int64) -> [FlightWaiter] {
        let late = waiters.filter { $0.deadline <= now }
        if !late.isEmpty { waiters.removeAll { $0.deadline <= now } }
        return late
    }
}

/// The budget a flight's calls spend, chosen at each call (each page, each retry) from who waits
/// for the flight then: a flight a warm started and only warmers wait for spends warming budget;
/// any other, callers' budget — so a caller who joins a warm's read is never queued behind the
/// warming line for its later pages. A call waits for a token only while nobody waiting has a
/// stale answer to take instead (a background refresh, with nobody waiting, never does).
private final class FlightAdmission: UpstreamAdmission {
    private weak var flight: MemberFlight?
    private let interactive: UpstreamAdmission
    private let warming: UpstreamAdmission
    private let loop: Loop

    init(flight: MemberFlight, interactive: UpstreamAdmission, warming: UpstreamAdmission, loop: Loop) {
        self.flight = flight
        self.interactive = interactive
        self.warming = warming
        self.loop = loop
    }

    /// The budget refused a call this read would not wait for.
    private(set) var refusedWithoutWaiting = false

    func admit(deadline: Int64, completion: @escaping (Result<Void, VoucherifyError>) -> Void) {
        if let flight, flight.preAdmitted {
            flight.preAdmitted = false
            return completion(.success(()))
        }
        let waiters = flight?.waiters ?? []
        let warmingOnly = flight?.startedByWarm == true && !waiters.isEmpty && waiters.allSatisfy(\.isWarming)
        let now = loop.monotonicMilliseconds
        let mayWait = !waiters.isEmpty && waiters.allSatisfy { $0.fallback == nil }
        let waitUntil = mayWait ? flight?.latestDeadline ?? now : now
        let shortened = waitUntil < deadline
        (warmingOnly ? warming : interactive).admit(deadline: min(deadline, waitUntil)) { [self] result in
            if shortened, case .failure = result { refusedWithoutWaiting = true }
            if case .success = result { flight?.waiters.first?.record?.upstreamReads += 1 }
            completion(result)
        }
    }

    // Both faces report to the same budget.
    func observe(_ observation: RateLimitObservation) { interactive.observe(observation) }
}

extension CacheLookup {
    /// Whether Redis answered (so leases and stores can work).
    var isUsable: Bool {
        if case .unavailable = self { return false }
        return true
    }
}

extension NotFoundSubject {
    init?(_ error: VoucherifyError) {
        switch error {
        case .campaignNotFound: self = .campaign
        case .memberNotFound: self = .member
        default: return nil
        }
    }

    var error: VoucherifyError { self == .campaign ? .campaignNotFound : .memberNotFound }
}
