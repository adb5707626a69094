import Testing
import TestSupport
@testable import ExpiryDomain

@Suite struct DeductionScheduleTests {
    func schedule(_ zone: String) throws -> DeductionSchedule {
        try #require(DeductionSchedule(timeZoneIdentifier: zone))
    }

    @Test func unknownZonesAreRejected() {
        #expect(DeductionSchedule(timeZoneIdentifier: "Mars/Olympus_Mons") == nil)
        #expect(DeductionSchedule(timeZoneIdentifier: "") == nil)
        #expect(DeductionSchedule(timeZoneIdentifier: "UTC") != nil)
        #expect(DeductionSchedule(timeZoneIdentifier: "Europe/Warsaw") != nil)
    }

    @Test(arguments: [
        ("UTC", "2026-11-22", "2026-11-23T00:00:00.000Z"),
        ("UTC", "2026-12-31", "2027-01-01T00:00:00.000Z"),
        ("UTC", "2028-02-28", "2028-02-29T00:00:00.000Z"),
        ("UTC", "2028-02-29", "2028-03-01T00:00:00.000Z"),
        ("UTC", "2027-02-28", "2027-03-01T00:00:00.000Z"),
        // Warsaw: CET +01:00 in winter, CEST +02:00 in summer; DST starts 2026-03-29, ends 2026-10-25.
        ("Europe/Warsaw", "2026-01-15", "2026-01-15T23:00:00.000Z"),
        ("Europe/Warsaw", "2026-07-01", "2026-07-01T22:00:00.000Z"),
        ("Europe/Warsaw", "2026-03-28", "2026-03-28T23:00:00.000Z"),
        ("Europe/Warsaw", "2026-03-29", "2026-03-29T22:00:00.000Z"),
        ("Europe/Warsaw", "2026-10-24", "2026-10-24T22:00:00.000Z"),
        ("Europe/Warsaw", "2026-10-25", "2026-10-25T23:00:00.000Z"),
        ("Europe/Warsaw", "2026-12-31", "2026-12-31T23:00:00.000Z"),
        ("Europe/Warsaw", "2028-02-29", "2028-02-29T23:00:00.000Z"),
        // New York: DST 2026-03-08 to 2026-11-01.
        ("America/New_York", "2026-07-01", "2026-07-02T04:00:00.000Z"),
        ("America/New_York", "2026-03-07", "2026-03-08T05:00:00.000Z"),
        ("America/New_York", "2026-03-08", "2026-03-09T04:00:00.000Z"),
        ("America/New_York", "2026-10-31", "2026-11-01T04:00:00.000Z"),
        ("America/New_York", "2026-12-31", "2027-01-01T05:00:00.000Z"),
        // Auckland: NZDT +13:00 until 2026-04-05, NZST +12:00, NZDT again from 2026-09-27.
        ("Pacific/Auckland", "2026-01-14", "2026-01-14T11:00:00.000Z"),
        ("Pacific/Auckland", "2026-04-05", "2026-04-05T12:00:00.000Z"),
        ("Pacific/Auckland", "2026-06-30", "2026-06-30T12:00:00.000Z"),
        ("Pacific/Auckland", "2026-12-31", "2026-12-31T11:00:00.000Z"),
        ("Pacific/Auckland", "2028-02-29", "2028-02-29T11:00:00.000Z"),
    ])
    func deductionIsTheFollowingLocalMidnight(_ zone: String, _ lastValidDay: String, _ expected: String) throws {
        #expect(try schedule(zone).deductionInstant(lastValidDay: try day(lastValidDay)).rfc3339 == expected)
    }

    @Test func midnightSkippedByDSTUsesTheFirstInstantOfTheDay() throws {
        // Santiago jumps from 00:00 (-04:00) to 01:00 (-03:00) on 2024-09-08: that day starts at 04:00Z.
        #expect(try schedule("America/Santiago").deductionInstant(lastValidDay: try day("2024-09-07")).rfc3339
            == "2024-09-08T04:00:00.000Z")
        // Havana's DST also starts at midnight: 2025-03-09 begins at 01:00 -04:00 = 05:00Z.
        #expect(try schedule("America/Havana").deductionInstant(lastValidDay: try day("2025-03-08")).rfc3339
            == "2025-03-09T05:00:00.000Z")
    }

    @Test func fallBackAtMidnight() throws {
        // Santiago falls back at 24:00 (-03:00) to 23:00 (-04:00) on the night into 2025-04-06,
        // so that day's only midnight is 00:00 -04:00 = 04:00Z.
        #expect(try schedule("America/Santiago").deductionInstant(lastValidDay: try day("2025-04-05")).rfc3339
            == "2025-04-06T04:00:00.000Z")
    }

    @Test func theNextDeductionIsTheFirstStillAhead() throws {
        let s = try schedule("Europe/Warsaw")
        let days = [try day("2026-11-21"), try day("2026-11-22"), try day("2026-12-31")]
        // 23:58 in Warsaw on the 22nd: the 21st's deduction passed, the 22nd's is two minutes away.
        #expect(s.nextDeduction(after: try instant("2026-11-22T22:58:00Z"), lastValidDays: days)?.rfc3339 == "2026-11-22T23:00:00.000Z")
        // At the deduction itself it is no longer ahead.
        #expect(s.nextDeduction(after: try instant("2026-11-22T23:00:00Z"), lastValidDays: days)?.rfc3339 == "2026-12-31T23:00:00.000Z")
        #expect(s.nextDeduction(after: try instant("2027-01-01T00:00:00Z"), lastValidDays: days) == nil)
        #expect(s.nextDeduction(after: try instant("2026-11-22T10:00:00Z"), lastValidDays: []) == nil)
    }

    @Test(arguments: [
        ("UTC", "2026-11-22T23:59:59.999Z", "2026-11-22"),
        ("UTC", "2026-11-23T00:00:00Z", "2026-11-23"),
        // Warsaw is an hour ahead in winter: 23:00 UTC is already the next day there.
        ("Europe/Warsaw", "2026-11-22T22:59:59Z", "2026-11-22"),
        ("Europe/Warsaw", "2026-11-22T23:00:00Z", "2026-11-23"),
        // New York is behind: 03:00 UTC is still the evening before.
        ("America/New_York", "2026-11-23T03:00:00Z", "2026-11-22"),
        ("UTC", "1969-12-31T23:59:59Z", "1969-12-31"),
    ])
    func todayIsTheCalendarDayInTheZone(zone: String, at: String, expected: String) throws {
        #expect(try schedule(zone).calendarDate(at: try instant(at)).iso == expected)
    }
}
