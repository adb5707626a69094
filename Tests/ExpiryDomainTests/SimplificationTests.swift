import Testing
import TestSupport
@testable import ExpiryDomain

@Suite struct SimplificationTests {
    let fetchedAt = Timestamp(millisecondsSince1970: 1_795_341_600_000)

    func simplify(_ buckets: [PointsBucket]) -> MemberExpiration {
        MemberExpiration(campaign: "Loyalty Campaign", member: "CARD-1", buckets: buckets, fetchedAt: fetchedAt)
    }

    @Test func groupsByDateAndSumsTotals() throws {
        let m = simplify([
            bucket("lopb_1", 100, try day("2026-11-22")),
            bucket("lopb_2", 50, try day("2026-11-22")),
            bucket("lopb_3", 25, try day("2026-12-01")),
            bucket("lopb_4", 30, nil),
        ])
        #expect(m.activePoints == 205)
        #expect(m.expiringPoints == 175)
        #expect(m.nonExpiringPoints == 30)
        #expect(m.expirations == [
            ExpirationDate(date: try day("2026-11-22"), points: 150, buckets: 2),
            ExpirationDate(date: try day("2026-12-01"), points: 25, buckets: 1),
        ])
        #expect(m.nextExpiration == ExpirationDate(date: try day("2026-11-22"), points: 150, buckets: 2))
        #expect(m.campaign == "Loyalty Campaign")
        #expect(m.member == "CARD-1")
        #expect(m.campaignId == "camp_1")
        #expect(m.voucherId == "v_1")
        #expect(m.fetchedAt == fetchedAt)
    }

    @Test func sortsDatesWhateverTheInputOrderAndKeepsBucketOrder() throws {
        let buckets = [
            bucket("c", 3, try day("2027-01-05")),
            bucket("a", 1, try day("2026-06-01")),
            bucket("n", 9, nil),
            bucket("b", 2, try day("2026-12-31")),
        ]
        let m = simplify(buckets)
        #expect(m.expirations.map(\.date.iso) == ["2026-06-01", "2026-12-31", "2027-01-05"])
        #expect(m.buckets == buckets)
    }

    @Test func neverExpiringPointsOnly() {
        let m = simplify([bucket("a", 40, nil), bucket("b", 2, nil)])
        #expect(m.activePoints == 42)
        #expect(m.expiringPoints == 0)
        #expect(m.nonExpiringPoints == 42)
        #expect(m.expirations.isEmpty)
        #expect(m.nextExpiration == nil)
    }

    @Test func zeroPointBucketsNeitherCountNorCreateDates() throws {
        let m = simplify([
            bucket("zero-alone", 0, try day("2026-05-01")),
            bucket("zero-shared", 0, try day("2026-06-01")),
            bucket("real", 10, try day("2026-06-01")),
        ])
        #expect(m.expirations == [ExpirationDate(date: try day("2026-06-01"), points: 10, buckets: 1)])
        #expect(m.activePoints == 10)
    }

    @Test func onlyActiveBucketsCountAndStatusIsCaseInsensitive() throws {
        let m = simplify([
            bucket("a", 10, try day("2026-06-01"), status: "active"),
            bucket("b", 20, try day("2026-06-01"), status: "Active"),
            bucket("c", 400, try day("2026-04-01"), status: "EXPIRED"),
            bucket("d", 800, nil, status: "INACTIVE"),
            bucket("e", 1600, nil, status: ""),
            bucket("f", 3200, nil, status: "ACTIVE "),
        ])
        #expect(m.activePoints == 30)
        #expect(m.nonExpiringPoints == 0)
        #expect(m.expirations == [ExpirationDate(date: try day("2026-06-01"), points: 30, buckets: 2)])
        #expect(m.buckets.count == 6)
    }

    @Test func emptyBucketList() {
        let m = simplify([])
        #expect(m.activePoints == 0)
        #expect(m.expiringPoints == 0)
        #expect(m.nonExpiringPoints == 0)
        #expect(m.expirations.isEmpty)
        #expect(m.campaignId == "")
        #expect(m.voucherId == "")
    }

    @Test func idsComeFromTheFirstBucketThatHasThem() throws {
        let m = simplify([
            bucket("a", 1, nil, voucherId: "", campaignId: ""),
            bucket("b", 1, nil, voucherId: "v_2", campaignId: ""),
            bucket("c", 1, nil, voucherId: "v_3", campaignId: "camp_3"),
        ])
        #expect(m.voucherId == "v_2")
        #expect(m.campaignId == "camp_3")
    }

    @Test func pointsExpiringBeforeIsStrict() throws {
        let m = simplify([
            bucket("a", 10, try day("2026-06-01")),
            bucket("b", 20, try day("2026-06-02")),
            bucket("c", 40, try day("2026-07-01")),
            bucket("n", 80, nil),
            bucket("x", 160, try day("2026-05-01"), status: "EXPIRED"),
        ])
        #expect(m.expirations.points(before: try day("2026-06-01")) == 0)
        #expect(m.expirations.points(before: try day("2026-06-02")) == 10)
        #expect(m.expirations.points(before: try day("2026-06-03")) == 30)
        #expect(m.expirations.points(before: try day("2030-01-01")) == 70)
    }

    @Test func hugeTotalsSaturateInsteadOfTrapping() throws {
        let m = simplify([bucket("a", Int64.max, try day("2026-06-01")), bucket("b", Int64.max, try day("2026-06-01"))])
        #expect(m.expiringPoints == Int64.max)
        #expect(m.expirations.first?.points == Int64.max)
    }
}
