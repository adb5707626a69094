import ExpiryDomain
import Voucherify

/// How long answers are served and in which state (contract, "Cache semantics"), all measured
/// from when the data left Voucherify:
///
///     fetchedAt      freshUntil (TTL − jitter)
///     |── fresh: hit ──|── stale-while-revalidate: stale now + one refresh ──|
///                      |── stale-if-error: stale only while Voucherify cannot be asked ──────────|
///     ······ never served at or past the next deduction instant, whatever the window ······
public struct CacheWindows: Equatable, Sendable {
    public var ttlSeconds: Int
    public var staleWhileRevalidateSeconds: Int
    public var staleIfErrorSeconds: Int
    public var notFoundSeconds: Int

    /// The contract's defaults.
    public init(ttlSeconds: Int = 300, staleWhileRevalidateSeconds: Int = 60, staleIfErrorSeconds: Int = 3600, notFoundSeconds: Int = 60) {
        self.ttlSeconds = ttlSeconds
        self.staleWhileRevalidateSeconds = staleWhileRevalidateSeconds
        self.staleIfErrorSeconds = staleIfErrorSeconds
        self.notFoundSeconds = notFoundSeconds
    }
}

/// The pure half of MemberAnswers: given what the cache holds, the caller's directives and the
/// time, what to do; and, after a read, what to store or serve instead. No I/O, so every rule is
/// tested directly.
struct MemberAnswerPolicy: Sendable {
    let schedule: DeductionSchedule
    let windows: CacheWindows

    /// What to do for one request.
    enum Decision: Equatable {
        /// A fresh record answers: an answer (hit) or a remembered not-found.
        case serve(CacheEntry, ageSeconds: Int64)
        /// Answer with this stale record now and refresh it in the background, once for the fleet.
        case serveStaleAndRefresh(CachedAnswer, ageSeconds: Int64)
        /// Read Voucherify (through single-flight and the budget); `fallback` is what may be served
        /// instead while Voucherify cannot be asked.
        case read(fallback: CachedAnswer?)
    }

    func decide(_ entry: CacheEntry?, directives: CacheDirectives, now: Timestamp) -> Decision {
        guard let entry else { return .read(fallback: nil) }
        let age = Self.ageSeconds(since: entry.fetchedAt, now: now)
        guard directives.accepts(ageSeconds: age) else { return .read(fallback: nil) }
        switch entry {
        case .notFound(let notFound):
            return now < notFound.freshUntil ? .serve(entry, ageSeconds: age) : .read(fallback: nil)
        case .answer(let answer):
            guard now < answer.notAfter else { return .read(fallback: nil) }
            if now < answer.freshUntil { return .serve(entry, ageSeconds: age) }
            if now < answer.freshUntil.adding(milliseconds: Self.milliseconds(windows.staleWhileRevalidateSeconds)) {
                return .serveStaleAndRefresh(answer, ageSeconds: age)
            }
            return .read(fallback: isWithinStaleIfError(answer, now: now) ? answer : nil)
        }
    }

    /// After a read failed with `error`: the stale answer to serve instead, when the failure is an
    /// outage and `fallback` is still inside stale-if-error and before its deduction instant.
    func staleFallback(_ fallback: CachedAnswer?, after error: VoucherifyError, now: Timestamp) -> CachedAnswer? {
        guard let fallback, error.isOutage, isWithinStaleIfError(fallback, now: now) else { return nil }
        return fallback
    }

    /// The record for an answer just read, and how long Redis keeps it. Fresh for the TTL less
    /// `jitterMilliseconds` (so answers written together do not expire together), never past the
    /// next deduction instant; kept through the stale windows.
    func entry(for expiration: MemberExpiration, jitterMilliseconds: Int64) -> (entry: CacheEntry, lifetimeMilliseconds: Int64) {
        let fetchedAt = expiration.fetchedAt
        let notAfter = schedule.nextDeduction(after: fetchedAt, lastValidDays: expiration.expirations.lazy.map(\.date))
            ?? Timestamp(millisecondsSince1970: .max)
        let ttl = max(1000, Self.milliseconds(windows.ttlSeconds) - max(0, min(jitterMilliseconds, maxJitterMilliseconds)))
        let freshUntil = min(fetchedAt.adding(milliseconds: ttl), notAfter)
        let staleFor = Self.milliseconds(max(windows.staleWhileRevalidateSeconds, windows.staleIfErrorSeconds))
        let keepUntil = min(freshUntil.adding(milliseconds: staleFor), notAfter)
        let answer = CachedAnswer(expiration, freshUntil: freshUntil, notAfter: notAfter)
        return (.answer(answer), Self.lifetime(from: fetchedAt, until: keepUntil))
    }

    /// The record for a `not_found` read at `now`, and how long Redis keeps it.
    func notFoundEntry(_ subject: NotFoundSubject, now: Timestamp) -> (entry: CacheEntry, lifetimeMilliseconds: Int64) {
        let freshUntil = now.adding(milliseconds: Self.milliseconds(windows.notFoundSeconds))
        return (.notFound(CachedNotFound(fetchedAt: now, freshUntil: freshUntil, subject: subject)), Self.lifetime(from: now, until: freshUntil))
    }

    /// A tenth of the TTL, at most 30 s: enough to spread a burst of writes, little enough that
    /// no answer is noticeably shorter-lived than configured.
    var maxJitterMilliseconds: Int64 { min(Self.milliseconds(windows.ttlSeconds) / 10, 30_000) }

    /// Whole seconds since `fetchedAt`, never negative (clocks of different replicas differ).
    static func ageSeconds(since fetchedAt: Timestamp, now: Timestamp) -> Int64 {
        let (difference, overflow) = now.millisecondsSince1970.subtractingReportingOverflow(fetchedAt.millisecondsSince1970)
        guard !overflow else { return now > fetchedAt ? Int64.max / 1000 : 0 }
        return max(0, difference / 1000)
    }

    private func isWithinStaleIfError(_ answer: CachedAnswer, now: Timestamp) -> Bool {
        now < answer.notAfter && now < answer.freshUntil.adding(milliseconds: Self.milliseconds(windows.staleIfErrorSeconds))
    }

    private static func milliseconds(_ seconds: Int) -> Int64 {
        let (value, overflow) = Int64(seconds).multipliedReportingOverflow(by: 1000)
        return overflow ? .max : value
    }

    /// Milliseconds from `start` to `end`: at least 1 (Redis refuses a zero expiry) and at most a
    /// year (Redis refuses expiries that overflow its clock; configured windows are far shorter).
    private static func lifetime(from start: Timestamp, until end: Timestamp) -> Int64 {
        let year: Int64 = 366 * 86_400_000
        let (difference, overflow) = end.millisecondsSince1970.subtractingReportingOverflow(start.millisecondsSince1970)
        return overflow ? year : min(year, max(1, difference))
    }
}
