import Voucherify

/// Who asks for an upstream call. Interactive reads come first: warming never takes the bucket
/// (or Voucherify's reported remaining) below the interactive reserve.
enum AdmissionPriority: Sendable {
    case interactive
    case warming
}

/// The budget's fixed numbers, derived once from the configuration; the same numbers are the
/// Lua script's first arguments (`RateBudgetScript`).
///
/// Amounts of tokens are whole *units*: one token is `unitsPerToken` (the window in
/// milliseconds) units, so refilling N tokens per window adds exactly N units per millisecond.
/// All arithmetic is then on integers, which the script's Lua doubles hold exactly too: every
/// value stays below 10^13 (`RateLimitSetting.maxRequests` × one hour in milliseconds, or a
/// Unix time in milliseconds), far from 2^53.
struct RateBudgetRules: Equatable, Sendable {
    /// Bucket size in units; 0 when no rate is configured (then only Voucherify's headers limit).
    let capacity: Int64
    /// Units added per millisecond: N.
    let refillPerMillisecond: Int64
    /// Units in one token: the window in milliseconds, which is also how long an empty bucket
    /// takes to fill up.
    let unitsPerToken: Int64
    /// Units warming must leave in the bucket: the reserve, rounded up.
    let warmingFloor: Int64
    /// How long a reported `X-Rate-Limit-Remaining` holds when no later answer replaces it:
    /// Voucherify's headers do not say when its window resets, so it is assumed reset one window
    /// after the last report (the configured window; a minute, Voucherify's shortest, when unset).
    let remainingHorizonMilliseconds: Int64
    /// The longest block a 429 can impose, as `RateLimitHeaders` clamps it.
    let maxBlockMilliseconds: Int64
    /// How long the Redis state outlives its last write: past that it is what a missing key
    /// means anyway (bucket full, no cap, no block), so idle state disappears by itself.
    let stateLifetimeMilliseconds: Int64
    /// The interactive reserve as a share, for the reserve kept out of Voucherify's remaining.
    let reserve: Double
    /// N when a rate is configured: the stand-in for `X-Rate-Limit-Limit` before one was read.
    let requestsPerWindow: Int64?

    init(setting: RateLimitSetting?, reserve: InteractiveReserve) {
        let window = setting?.window.milliseconds ?? 0
        let requests = Int64(setting?.requests ?? 0)
        capacity = requests * window
        refillPerMillisecond = requests
        // Unused without a bucket; 1 keeps every division defined.
        unitsPerToken = max(1, window)
        warmingFloor = Int64((reserve.share * Double(capacity)).rounded(.up))
        remainingHorizonMilliseconds = setting == nil ? RateLimitSetting.Window.minute.milliseconds : window
        maxBlockMilliseconds = Int64(RateLimitHeaders.maxRetryAfterSeconds) * 1000
        stateLifetimeMilliseconds = window + remainingHorizonMilliseconds + maxBlockMilliseconds
        self.reserve = reserve.share
        requestsPerWindow = setting.map { Int64($0.requests) }
    }

    /// Warming can never be admitted: the reserve leaves no whole token to it.
    var warmingNeverFits: Bool { capacity > 0 && warmingFloor + unitsPerToken > capacity }

    /// The smallest rise of the reported remaining taken as a new window: more than the calls one
    /// replica has in flight on a worker or two.
    static let minimumResetJump: Int64 = 64

    /// Largest `X-Rate-Limit-Remaining` / `-Limit` taken as said; larger values are clamped.
    static let maxReportedCalls: Int64 = 1_000_000_000

    /// What one Voucherify answer changes in the budget, clamped (never trusted raw); nil when
    /// it changes nothing.
    func recording(_ observation: RateLimitObservation) -> BudgetObservation? {
        let blocked = observation.blockedForSeconds.map { seconds in
            // A 429 always stops calls for a while, even when it announced 0 seconds.
            Int64(min(max(1, seconds), RateLimitHeaders.maxRetryAfterSeconds)) * 1000
        }
        let remaining = observation.remaining.map { Int64(min(max(0, $0), Int(Self.maxReportedCalls))) }
        guard blocked != nil || remaining != nil else { return nil }
        let limit = observation.limit.map { Int64(min(max(0, $0), Int(Self.maxReportedCalls))) }
        let reserveBase = limit ?? requestsPerWindow ?? 0
        return BudgetObservation(remaining: remaining,
                                 remainingReserve: Int64((reserve * Double(reserveBase)).rounded(.up)),
                                 blockedForMilliseconds: blocked ?? 0,
                                 resetJump: max(Self.minimumResetJump, reserveBase / 4))
    }
}

/// One answer's rate-limit headers as the budget records them.
struct BudgetObservation: Equatable, Sendable {
    /// `X-Rate-Limit-Remaining`, clamped to 0…`maxReportedCalls`.
    var remaining: Int64?
    /// Calls of that remaining warming must leave: the reserve share of `X-Rate-Limit-Limit`
    /// (of the configured N when Voucherify sent no limit), rounded up.
    var remainingReserve: Int64
    /// A 429's block, 1 s…`maxBlockMilliseconds`; 0 for any other answer.
    var blockedForMilliseconds: Int64
    /// How much higher than the current cap a report must be to mean Voucherify's window reset
    /// (a quarter of the limit, at least `minimumResetJump`). A smaller rise is an answer to an
    /// older call arriving late, and is ignored.
    var resetJump: Int64
}

/// What the budget answered to a request for up to `wanted` calls.
struct BudgetDecision: Equatable, Sendable {
    /// Calls admitted now, 0…wanted.
    var granted: Int64
    /// When fewer were granted than wanted: milliseconds until the next call of this priority
    /// can be admitted (≥ 1, assuming no one else spends first). 0 when all were granted.
    var waitMilliseconds: Int64
    /// Whole tokens left in the bucket; nil without a configured rate.
    var tokensLeft: Int64?
}

/// The budget's state and its arithmetic: a token bucket, the cap of Voucherify's last reported
/// remaining, and the block after a 429. `RateBudgetScript` is a line-by-line transcription of
/// `take` and `observe` (the Redis copy, shared by every replica); `LocalRateBudget` runs this
/// one (each replica's fallback). Times are milliseconds on one clock: Redis' for the shared
/// state, this process' monotonic clock for the local one.
struct RateBudgetState: Equatable, Sendable {
    /// Bucket content in units (see `RateBudgetRules`).
    var tokens: Int64
    var refilledAt: Int64 = 0
    /// Voucherify's last reported remaining calls, less the calls admitted since.
    var remaining: Int64 = 0
    /// The remaining cap applies while `now < remainingUntil`.
    var remainingUntil: Int64 = 0
    /// Calls of `remaining` warming must leave (from the same report).
    var remainingReserve: Int64 = 0
    /// No call at all while `now < blockedUntil` (after a 429).
    var blockedUntil: Int64 = 0

    /// The state a missing Redis key stands for: a full bucket, no cap, no block.
    init(rules: RateBudgetRules) {
        tokens = rules.capacity
    }

    /// Admits up to `wanted` calls of `priority` at `now`, spending what they use.
    mutating func take(upTo wanted: Int64, for priority: AdmissionPriority, rules: RateBudgetRules, now: Int64) -> BudgetDecision {
        refill(rules: rules, now: now)
        if blockedUntil > now {
            return BudgetDecision(granted: 0, waitMilliseconds: blockedUntil - now, tokensLeft: tokensLeft(rules))
        }
        let floor = priority == .warming ? rules.warmingFloor : 0
        let remainingFloor = priority == .warming ? remainingReserve : 0
        let capped = remainingUntil > now
        var granted = wanted
        if rules.capacity > 0 { granted = min(granted, max(0, tokens - floor) / rules.unitsPerToken) }
        if capped { granted = min(granted, max(0, remaining - remainingFloor)) }
        if rules.capacity > 0 { tokens -= granted * rules.unitsPerToken }
        if capped { remaining -= granted }
        var wait: Int64 = 0
        if granted < wanted {
            if rules.capacity > 0, tokens - floor < rules.unitsPerToken {
                wait = ceilingDivision(floor + rules.unitsPerToken - tokens, by: rules.refillPerMillisecond)
            }
            if capped, remaining - remainingFloor < 1 { wait = max(wait, remainingUntil - now) }
        }
        return BudgetDecision(granted: granted, waitMilliseconds: wait, tokensLeft: tokensLeft(rules))
    }

    /// Records one answer's headers. A 429 blocks every call until its time has passed and drops
    /// the remaining cap: Voucherify's window starts afresh when the block ends, so reports of
    /// the old window (answers to calls still in flight during the block) are ignored too. Any
    /// other report sets the cap for one horizon when it is lower (answers to concurrent calls
    /// arrive out of order: the lowest is the newest word), when the cap has lapsed, or when it
    /// rises by `resetJump` or more (Voucherify's window reset).
    mutating func observe(_ observation: BudgetObservation, rules: RateBudgetRules, now: Int64) {
        if observation.blockedForMilliseconds > 0 {
            blockedUntil = max(blockedUntil, now + min(observation.blockedForMilliseconds, rules.maxBlockMilliseconds))
            remainingUntil = 0
        } else if let reported = observation.remaining, blockedUntil <= now,
                  remainingUntil <= now || reported <= remaining || reported - remaining >= observation.resetJump {
            remaining = reported
            remainingUntil = now + rules.remainingHorizonMilliseconds
            remainingReserve = observation.remainingReserve
        }
    }

    /// Spends `count` calls admitted elsewhere (by the shared budget), never below empty: keeps
    /// a replica's local budget in step with what it spent, so falling back to it does not
    /// start from a full bucket.
    mutating func spend(_ count: Int64, rules: RateBudgetRules, now: Int64) {
        refill(rules: rules, now: now)
        if rules.capacity > 0 { tokens = max(0, tokens - count * rules.unitsPerToken) }
        if remainingUntil > now { remaining = max(0, remaining - count) }
    }

    /// Continuous refill since the last decision. A clock that stepped back refills nothing,
    /// and the block and the cap never reach further ahead than they could have been set, so a
    /// stepped clock cannot stall the budget for longer than that.
    private mutating func refill(rules: RateBudgetRules, now: Int64) {
        if rules.capacity > 0 {
            let elapsed = min(max(0, now - refilledAt), rules.unitsPerToken)
            tokens = min(rules.capacity, tokens + elapsed * rules.refillPerMillisecond)
        }
        refilledAt = now
        blockedUntil = min(blockedUntil, now + rules.maxBlockMilliseconds)
        remainingUntil = min(remainingUntil, now + rules.remainingHorizonMilliseconds)
    }

    private func tokensLeft(_ rules: RateBudgetRules) -> Int64? {
        rules.capacity > 0 ? tokens / rules.unitsPerToken : nil
    }
}

/// ⌈a / b⌉ for a ≥ 0, b > 0.
private func ceilingDivision(_ dividend: Int64, by divisor: Int64) -> Int64 {
    (dividend + divisor - 1) / divisor
}
