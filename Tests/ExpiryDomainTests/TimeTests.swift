import Testing
import Codecs
import TestSupport
@testable import ExpiryDomain

@Suite struct CalendarDateTests {
    @Test func parsesRealDates() throws {
        let date = try day("2026-11-22")
        #expect((date.year, date.month, date.day) == (2026, 11, 22))
        #expect(date.iso == "2026-11-22")
        #expect(CalendarDate(iso: "2028-02-29") != nil)
        #expect(CalendarDate(iso: "2000-02-29") != nil)
        #expect(CalendarDate(iso: "0001-01-01")?.iso == "0001-01-01")
        #expect(CalendarDate(iso: "2026-11-22"[...]) == date)
    }

    @Test(arguments: ["2026-02-29", "1900-02-29", "2026-02-30", "2026-04-31", "2026-13-01", "2026-00-10", "2026-01-00",
                      "2026-1-01", "2026-01-1", "26-01-01", "2026/01/01", "2026-01-01T00:00:00Z", " 2026-01-01", "2026-01-01 ",
                      "", "abcd-ef-gh", "२०२६-01-01", "+026-01-01"])
    func rejectsMalformedOrImpossibleDates(_ text: String) {
        #expect(CalendarDate(iso: text) == nil)
    }

    @Test func memberwiseInitValidates() {
        #expect(CalendarDate(year: 2024, month: 2, day: 29) != nil)
        #expect(CalendarDate(year: 2023, month: 2, day: 29) == nil)
        #expect(CalendarDate(year: 10000, month: 1, day: 1) == nil)
        #expect(CalendarDate(year: 2024, month: 12, day: 32) == nil)
    }

    @Test func ordersChronologically() throws {
        let sorted = try ["2027-01-01", "2026-12-31", "2026-02-01", "2026-01-31"].map(day).sorted()
        #expect(sorted.map(\.iso) == ["2026-01-31", "2026-02-01", "2026-12-31", "2027-01-01"])
    }

    @Test func dayNumbersRoundTrip() throws {
        #expect(try day("1970-01-01").daysSince1970 == 0)
        #expect(try day("1969-12-31").daysSince1970 == -1)
        #expect(try day("2000-03-01").daysSince1970 == 11017)
        for days in stride(from: -719_528, through: 2_932_896, by: 997) { // 0000-01-01 ... 9999-12-31
            let date = CalendarDate(daysSince1970: days)
            #expect(date.daysSince1970 == days)
            #expect(CalendarDate(year: date.year, month: date.month, day: date.day) == date)
        }
    }
}

@Suite struct TimestampTests {
    @Test(arguments: [
        ("2026-11-22T10:00:00Z", 1_795_341_600_000 as Int64),
        ("2026-11-22T10:00:00.000Z", 1_795_341_600_000),
        ("2026-11-22t10:00:00z", 1_795_341_600_000),
        ("2026-11-22T11:00:00+01:00", 1_795_341_600_000),
        ("2026-11-22T05:30:00-04:30", 1_795_341_600_000),
        ("2000-02-29T12:34:56.789Z", 951_827_696_789),
        ("2000-02-29T12:34:56.7Z", 951_827_696_700),
        ("2000-02-29T12:34:56.78Z", 951_827_696_780),
        ("2000-02-29T12:34:56.789999999Z", 951_827_696_789),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.001Z", 1),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1900-01-01T00:00:00Z", -2_208_988_800_000),
        ("1970-01-01T00:00:00+14:00", -50_400_000),
    ])
    func parsesRFC3339(_ text: String, _ milliseconds: Int64) {
        #expect(Timestamp(rfc3339: text)?.millisecondsSince1970 == milliseconds)
    }

    @Test(arguments: ["", "2026-11-22", "2026-11-22T10:00:00", "2026-11-22 10:00:00Z", "2026-11-22T24:00:00Z",
                      "2026-11-22T10:60:00Z", "2026-11-22T10:00:60Z", "2026-11-22T10:00:00.Z", "2026-11-22T10:00:00+0100",
                      "2026-11-22T10:00:00+01", "2026-11-22T10:00:00+24:00", "2026-02-30T10:00:00Z", "2026-11-22T10:00:00Zjunk",
                      "2026-11-22T1:00:00Z", "2026-11-22T10:00:00.123"])
    func rejectsMalformedTimestamps(_ text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }

    @Test(arguments: [
        (1_795_341_600_000 as Int64, "2026-11-22T10:00:00.000Z"),
        (951_827_696_789, "2000-02-29T12:34:56.789Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ])
    func formatsInUTCWithMilliseconds(_ milliseconds: Int64, _ expected: String) {
        let timestamp = Timestamp(millisecondsSince1970: milliseconds)
        #expect(timestamp.rfc3339 == expected)
        #expect(Timestamp(rfc3339: timestamp.rfc3339) == timestamp)
    }

    @Test func offsetsNormaliseToUTC() throws {
        #expect(try instant("2026-03-29T01:30:00.5+02:00").rfc3339 == "2026-03-28T23:30:00.500Z")
        #expect(try instant("1969-12-31T20:00:00-05:00").rfc3339 == "1970-01-01T01:00:00.000Z")
    }

    @Test func nowIsRecentAndOrdered() throws {
        let now = Timestamp.now()
        #expect(now > (try instant("2024-01-01T00:00:00Z")))
        #expect(Timestamp.now() >= now)
    }

    @Test func addingSaturates() {
        #expect(Timestamp(millisecondsSince1970: 5).adding(milliseconds: 10).millisecondsSince1970 == 15)
        #expect(Timestamp(millisecondsSince1970: Int64.max - 1).adding(milliseconds: 10).millisecondsSince1970 == Int64.max)
        #expect(Timestamp(millisecondsSince1970: Int64.min + 1).adding(milliseconds: -10).millisecondsSince1970 == Int64.min)
    }
}

@Suite struct JSONTimeTests {
    @Test func writesDatesAndTimestamps() throws {
        let date = try day("2026-02-03")
        let time = try instant("2026-11-22T10:00:00Z")
        #expect(written { $0.appendDate(date) } == #""2026-02-03""#)
        #expect(written { $0.appendTimestamp(time) } == #""2026-11-22T10:00:00.000Z""#)
    }

    func written(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        body(&writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
