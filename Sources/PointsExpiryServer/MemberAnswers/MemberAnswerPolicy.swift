import ExpiryDomain

/// The pure half of MemberAnswers: given what the cache holds, the time, and an answer just
/// read from Voucherify, what to do. No I/O, so every rule is tested directly.
struct MemberAnswerPolicy: Sendable {
    let schedule: DeductionSchedule
    /// Longest life of a cached answer (`CACHE_TTL_SECONDS`).
    let ttlSeconds: Int

    /// What to do with a cache lookup's result.
    enum Lookup: Equatable {
        /// Serve the cached answer; `ageSeconds` is the time since it left Voucherify.
        case serve(CachedAnswer, ageSeconds: Int64)
        /// Ask Voucherify, then store what it says (fenced).
        case readThrough
        /// Ask Voucherify and do not store: the cache cannot be used (Redis unavailable).
        case readThroughWithoutStore
    }

    func decide(_ lookup: CacheLookup, now: Timestamp) -> Lookup {
        switch lookup {
        case .found(let answer):
            // Each field carries its own deadline (the deduction instant or the TTL, whichever
            // is first); the Redis hash may live on for a later field, so re-check it here.
            guard answer.notAfter > now else { return .readThrough }
            return .serve(answer, ageSeconds: Self.ageSeconds(since: answer.fetchedAt, now: now))
        case .absent:
            return .readThrough
        case .unavailable:
            return .readThroughWithoutStore
        }
    }

    /// The cache record for an answer read at `fetchedAt`, and whether it may be stored: not when
    /// its deduction instant has already passed (Voucherify's nightly job is behind).
    func record(for expiration: MemberExpiration) -> (answer: CachedAnswer, storable: Bool) {
        let notAfter = schedule.cacheNotAfter(fetchedAt: expiration.fetchedAt, earliestExpiry: expiration.earliestBucketExpiry,
                                              maxTTLSeconds: ttlSeconds)
        return (CachedAnswer(expiration, notAfter: notAfter ?? expiration.fetchedAt), notAfter != nil)
    }

    /// Whole seconds since `fetchedAt`, never negative (clocks of different replicas differ).
    static func ageSeconds(since fetchedAt: Timestamp, now: Timestamp) -> Int64 {
        let (difference, overflow) = now.millisecondsSince1970.subtractingReportingOverflow(fetchedAt.millisecondsSince1970)
        guard !overflow else { return now > fetchedAt ? Int64.max / 1000 : 0 }
        return max(0, difference / 1000)
    }
}
