import ExpiryDomain
import Testing
import TestSupport
import Voucherify
@testable import PointsExpiryServer

/// Every state of a cached record, every request directive and every upstream state, against the
/// contract's "Cache semantics". Windows: fresh 300 s, stale-while-revalidate 60 s, stale-if-error
/// 3600 s, not-found 60 s; project zone Warsaw (UTC+1 in November).
@Suite struct MemberAnswerPolicyTests {
    let policy = MemberAnswerPolicy(schedule: DeductionSchedule(timeZoneIdentifier: "Europe/Warsaw")!,
                                    windows: CacheWindows(ttlSeconds: 300, staleWhileRevalidateSeconds: 60, staleIfErrorSeconds: 3600,
                                                          notFoundSeconds: 60))

    /// A record read at 10:00:00Z, fresh until 10:05:00Z, deducted at `notAfter`.
    func answer(notAfter: String = "2026-12-31T23:00:00Z") throws -> CachedAnswer {
        let fetched = try instant("2026-11-22T10:00:00Z")
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [], fetchedAt: fetched)
        return CachedAnswer(expiration, freshUntil: fetched.adding(milliseconds: 300_000), notAfter: try instant(notAfter))
    }

    func decide(_ entry: CacheEntry?, at time: String, _ directives: CacheDirectives = .none) throws -> MemberAnswerPolicy.Decision {
        policy.decide(entry, directives: directives, now: try instant(time))
    }

    // MARK: Answer states

    @Test func freshIsAHitWithItsAge() throws {
        let cached = try answer()
        #expect(try decide(.answer(cached), at: "2026-11-22T10:01:30.999Z") == .serve(.answer(cached), ageSeconds: 90))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:04:59.999Z") == .serve(.answer(cached), ageSeconds: 299))
    }

    @Test func staleWhileRevalidateIsServedAndRefreshed() throws {
        let cached = try answer()
        #expect(try decide(.answer(cached), at: "2026-11-22T10:05:00Z") == .serveStaleAndRefresh(cached, ageSeconds: 300))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:05:59.999Z") == .serveStaleAndRefresh(cached, ageSeconds: 359))
    }

    @Test func staleIfErrorReadsWithTheRecordAsFallback() throws {
        let cached = try answer()
        #expect(try decide(.answer(cached), at: "2026-11-22T10:06:00Z") == .read(fallback: cached))
        #expect(try decide(.answer(cached), at: "2026-11-22T11:04:59.999Z") == .read(fallback: cached))
    }

    @Test func pastEveryWindowReadsWithNoFallback() throws {
        #expect(try decide(.answer(try answer()), at: "2026-11-22T11:05:00Z") == .read(fallback: nil))
    }

    @Test func absentReads() throws {
        #expect(try decide(nil, at: "2026-11-22T10:00:00Z") == .read(fallback: nil))
    }

    /// Never served, in any state, at or past the deduction instant: not fresh, not stale.
    @Test func nothingIsServedAtOrPastTheDeductionInstant() throws {
        let cached = try answer(notAfter: "2026-11-22T10:02:00Z")
        #expect(try decide(.answer(cached), at: "2026-11-22T10:01:59.999Z") == .serve(.answer(cached), ageSeconds: 119))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:02:00Z") == .read(fallback: nil))
        let inStaleWindows = try answer(notAfter: "2026-11-22T10:30:00Z")
        #expect(try decide(.answer(inStaleWindows), at: "2026-11-22T10:05:30Z") == .serveStaleAndRefresh(inStaleWindows, ageSeconds: 330))
        #expect(try decide(.answer(inStaleWindows), at: "2026-11-22T10:29:00Z") == .read(fallback: inStaleWindows))
        #expect(try decide(.answer(inStaleWindows), at: "2026-11-22T10:30:00Z") == .read(fallback: nil))
        #expect(policy.staleFallback(inStaleWindows, after: .unavailable("503"), now: try instant("2026-11-22T10:30:00Z")) == nil)
    }

    @Test func aNotFoundIsServedUntilItsWindowEndsAndNeverStale() throws {
        let (entry, lifetime) = policy.notFoundEntry(.member, now: try instant("2026-11-22T10:00:00Z"))
        #expect(lifetime == 60_000)
        #expect(try decide(entry, at: "2026-11-22T10:00:59.999Z") == .serve(entry, ageSeconds: 59))
        #expect(try decide(entry, at: "2026-11-22T10:01:00Z") == .read(fallback: nil))
    }

    // MARK: Directives

    @Test func noCacheAlwaysReadsAndRefusesStale() throws {
        let cached = try answer()
        let noCache = CacheDirectives(noCache: true)
        #expect(try decide(.answer(cached), at: "2026-11-22T10:00:01Z", noCache) == .read(fallback: nil))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:10:00Z", noCache) == .read(fallback: nil))
        #expect(try decide(policy.notFoundEntry(.campaign, now: try instant("2026-11-22T10:00:00Z")).entry, at: "2026-11-22T10:00:01Z", noCache)
            == .read(fallback: nil))
    }

    @Test func maxAgeAcceptsOnlyYoungEnoughRecords() throws {
        let cached = try answer()
        let maxAge = CacheDirectives(maxAgeSeconds: 60)
        #expect(try decide(.answer(cached), at: "2026-11-22T10:01:00.999Z", maxAge) == .serve(.answer(cached), ageSeconds: 60))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:01:01Z", maxAge) == .read(fallback: nil))
        // A generous max-age does not extend freshness: the windows still apply.
        let generous = CacheDirectives(maxAgeSeconds: 100_000)
        #expect(try decide(.answer(cached), at: "2026-11-22T10:05:30Z", generous) == .serveStaleAndRefresh(cached, ageSeconds: 330))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:30:00Z", generous) == .read(fallback: cached))
        #expect(try decide(.answer(cached), at: "2026-11-22T10:00:00Z", CacheDirectives(maxAgeSeconds: 0)) == .serve(.answer(cached), ageSeconds: 0))
    }

    // MARK: Upstream states

    /// Outages (5xx, timeout, network, 429, budget spent, circuit open, unreadable answers) fall
    /// back to a stale answer inside stale-if-error; answers (not found, bad credentials) do not.
    @Test(arguments: [
        (VoucherifyError.unavailable("HTTP 503"), true), (.unavailable("circuit open"), true), (.rateLimited(retryAfterSeconds: 20), true),
        (.rateLimited(retryAfterSeconds: nil), true), (.malformed("bad"), true), (.memberNotFound, false), (.campaignNotFound, false),
        (.rejectedCredentials(status: 401), false), (.rejectedRequest(status: 400, detail: "x"), false),
    ])
    func staleIsServedOnlyForOutages(_ error: VoucherifyError, _ servesStale: Bool) throws {
        let cached = try answer()
        let served = policy.staleFallback(cached, after: error, now: try instant("2026-11-22T10:30:00Z"))
        #expect((served == cached) == servesStale)
    }

    @Test func staleIfErrorEndsOnTime() throws {
        let cached = try answer()
        #expect(policy.staleFallback(cached, after: .unavailable("x"), now: try instant("2026-11-22T11:04:59.999Z")) == cached)
        #expect(policy.staleFallback(cached, after: .unavailable("x"), now: try instant("2026-11-22T11:05:00Z")) == nil)
        #expect(policy.staleFallback(nil, after: .unavailable("x"), now: try instant("2026-11-22T10:10:00Z")) == nil)
    }

    // MARK: Records

    @Test func aRecordIsFreshForTheTTLLessJitterAndKeptThroughTheStaleWindows() throws {
        let fetched = try instant("2026-11-22T10:00:00Z")
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_1", 10, try day("2026-12-31"))], fetchedAt: fetched)
        let (entry, lifetime) = policy.entry(for: expiration, jitterMilliseconds: 7_000)
        guard case .answer(let answer) = entry else { Issue.record("not an answer"); return }
        #expect(answer.freshUntil == fetched.adding(milliseconds: 293_000))
        #expect(answer.notAfter == (try instant("2026-12-31T23:00:00Z")))
        #expect(lifetime == 293_000 + 3_600_000)
        // Jitter is capped at a tenth of the TTL (30 s at most), and never negative.
        guard case .answer(let capped) = policy.entry(for: expiration, jitterMilliseconds: 1_000_000).entry,
              case .answer(let unjittered) = policy.entry(for: expiration, jitterMilliseconds: -5).entry else { return }
        #expect(capped.freshUntil == fetched.adding(milliseconds: 270_000))
        #expect(unjittered.freshUntil == fetched.adding(milliseconds: 300_000))
        #expect(policy.maxJitterMilliseconds == 30_000)
    }

    @Test func aRecordIsCutAtTheNextDeduction() throws {
        let fetched = try instant("2026-11-22T22:58:00Z") // 23:58 in Warsaw
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_1", 10, try day("2026-11-22"))], fetchedAt: fetched)
        let (entry, lifetime) = policy.entry(for: expiration, jitterMilliseconds: 0)
        guard case .answer(let answer) = entry else { Issue.record("not an answer"); return }
        #expect(answer.freshUntil == (try instant("2026-11-22T23:00:00Z")))
        #expect(answer.notAfter == (try instant("2026-11-22T23:00:00Z")))
        #expect(lifetime == 120_000)
    }

    /// Midnight passed but Voucherify's nightly job has not run: the due bucket is still listed.
    /// That answer is cached like any other (fresh for the TTL), until the next deduction ahead.
    @Test func anAnswerReadPastItsDeductionIsCachedForTheTTL() throws {
        let fetched = try instant("2026-11-23T05:00:00Z")
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [
            bucket("lopb_due", 10, try day("2026-11-22")), bucket("lopb_later", 5, try day("2026-11-23")),
        ], fetchedAt: fetched)
        let (entry, _) = policy.entry(for: expiration, jitterMilliseconds: 0)
        guard case .answer(let answer) = entry else { Issue.record("not an answer"); return }
        #expect(answer.freshUntil == fetched.adding(milliseconds: 300_000))
        #expect(answer.notAfter == (try instant("2026-11-23T23:00:00Z")))
        #expect(policy.decide(entry, directives: .none, now: fetched.adding(milliseconds: 1000)) == .serve(entry, ageSeconds: 1))
    }

    @Test func hugeWindowsSaturateIntoAYearOfRedisLifetime() throws {
        let long = MemberAnswerPolicy(schedule: policy.schedule, windows: CacheWindows(ttlSeconds: .max, staleWhileRevalidateSeconds: .max,
                                                                                       staleIfErrorSeconds: .max, notFoundSeconds: .max))
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [], fetchedAt: try instant("2026-11-22T10:00:00Z"))
        #expect(long.entry(for: expiration, jitterMilliseconds: 0).lifetimeMilliseconds == 366 * 86_400_000)
        #expect(long.notFoundEntry(.member, now: try instant("2026-11-22T10:00:00Z")).lifetimeMilliseconds == 366 * 86_400_000)
    }

    /// Another replica's clock may be ahead: an age is never negative.
    @Test func ageIsNeverNegativeAndNeverTraps() throws {
        #expect(MemberAnswerPolicy.ageSeconds(since: try instant("2026-11-22T10:00:10Z"), now: try instant("2026-11-22T10:00:00Z")) == 0)
        #expect(MemberAnswerPolicy.ageSeconds(since: Timestamp(millisecondsSince1970: .min), now: Timestamp(millisecondsSince1970: .max)) > 0)
        #expect(MemberAnswerPolicy.ageSeconds(since: Timestamp(millisecondsSince1970: .max), now: Timestamp(millisecondsSince1970: .min)) == 0)
    }
}

@Suite struct CacheDirectivesTests {
    @Test(arguments: [
        (nil, CacheDirectives()),
        ("no-cache", CacheDirectives(noCache: true)),
        ("No-Cache, max-age=5", CacheDirectives(noCache: true, maxAgeSeconds: 5)),
        ("max-age=30", CacheDirectives(maxAgeSeconds: 30)),
        (" max-age = \"12\" ", CacheDirectives(maxAgeSeconds: 12)),
        ("max-age=30, max-age=10", CacheDirectives(maxAgeSeconds: 10)),
        ("max-age=99999999999999999999999", CacheDirectives(maxAgeSeconds: .max)),
        ("max-age=-1, max-age=, max-age=1h, max-age", CacheDirectives()),
        ("no-store, private, stale-if-error=5", CacheDirectives()),
        ("no-cache=\"x\"", CacheDirectives(noCache: true)),
    ] as [(String?, CacheDirectives)])
    func parses(_ header: String?, _ expected: CacheDirectives) {
        #expect(CacheDirectives(header: header) == expected)
    }

    @Test func acceptsByAge() {
        #expect(CacheDirectives().accepts(ageSeconds: .max))
        #expect(!CacheDirectives(noCache: true).accepts(ageSeconds: 0))
        #expect(CacheDirectives(maxAgeSeconds: 5).accepts(ageSeconds: 5))
        #expect(!CacheDirectives(maxAgeSeconds: 5).accepts(ageSeconds: 6))
    }
}
