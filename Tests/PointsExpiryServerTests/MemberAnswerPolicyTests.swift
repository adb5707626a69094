import ExpiryDomain
import Testing
import TestSupport
@testable import PointsExpiryServer

@Suite struct MemberAnswerPolicyTests {
    let policy = MemberAnswerPolicy(schedule: DeductionSchedule(timeZoneIdentifier: "Europe/Warsaw")!, ttlSeconds: 300)

    func answer(fetchedAt: String, notAfter: String) throws -> CachedAnswer {
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [], fetchedAt: try instant(fetchedAt))
        return CachedAnswer(expiration, notAfter: try instant(notAfter))
    }

    @Test func servesARecordBeforeItsDeadlineWithItsAge() throws {
        let cached = try answer(fetchedAt: "2026-11-22T10:00:00Z", notAfter: "2026-11-22T10:05:00Z")
        #expect(policy.decide(.found(cached), now: try instant("2026-11-22T10:01:30.999Z")) == .serve(cached, ageSeconds: 90))
    }

    @Test func neverServesAtOrPastTheRecordsDeadline() throws {
        let cached = try answer(fetchedAt: "2026-11-22T10:00:00Z", notAfter: "2026-11-22T10:05:00Z")
        #expect(policy.decide(.found(cached), now: try instant("2026-11-22T10:05:00Z")) == .readThrough)
        #expect(policy.decide(.found(cached), now: try instant("2026-11-23T00:00:00Z")) == .readThrough)
    }

    @Test func absentReadsThroughAndStoresUnavailableDoesNotStore() throws {
        #expect(policy.decide(.absent, now: try instant("2026-11-22T10:00:00Z")) == .readThrough)
        #expect(policy.decide(.unavailable, now: try instant("2026-11-22T10:00:00Z")) == .readThroughWithoutStore)
    }

    /// Another replica's clock may be ahead: an age is never negative.
    @Test func ageIsNeverNegativeAndNeverTraps() throws {
        #expect(MemberAnswerPolicy.ageSeconds(since: try instant("2026-11-22T10:00:10Z"), now: try instant("2026-11-22T10:00:00Z")) == 0)
        #expect(MemberAnswerPolicy.ageSeconds(since: Timestamp(millisecondsSince1970: .min), now: Timestamp(millisecondsSince1970: .max)) > 0)
        #expect(MemberAnswerPolicy.ageSeconds(since: Timestamp(millisecondsSince1970: .max), now: Timestamp(millisecondsSince1970: .min)) == 0)
    }

    @Test func aRecordLivesUntilTheTTLOrTheDeductionWhicheverIsFirst() throws {
        let fetched = try instant("2026-11-22T22:58:00Z") // 23:58 in Warsaw
        let expiring = MemberExpiration(campaign: "c", member: "m", buckets: [
            bucket("lopb_1", 10, try day("2026-11-22")),
        ], fetchedAt: fetched)
        let (record, storable) = policy.record(for: expiring)
        #expect(storable)
        #expect(record.notAfter == (try instant("2026-11-22T23:00:00Z")))

        let lasting = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_2", 10, try day("2026-12-31"))], fetchedAt: fetched)
        #expect(policy.record(for: lasting).answer.notAfter == fetched.adding(milliseconds: 300_000))
    }

    /// Voucherify's nightly job is behind: the deduction instant has passed, so the answer is
    /// served to this caller but not stored.
    @Test func anAnswerPastItsDeductionIsNotStorable() throws {
        let fetched = try instant("2026-11-23T05:00:00Z")
        let overdue = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_1", 10, try day("2026-11-22"))], fetchedAt: fetched)
        #expect(policy.record(for: overdue).storable == false)
    }
}
