import Foundation

/// Calendar arithmetic in UTC without DateFormatter: proleptic Gregorian days since 1970-01-01.
/// Used for generated data (deterministic for a seed and a day) and for validating input dates.
enum CivilDate {
    /// Days since the Unix epoch → (year, month, day). Howard Hinnant's civil_from_days.
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// (year, month, day) → days since the Unix epoch. Howard Hinnant's days_from_civil.
    static func days(year: Int64, month: Int, day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// Today's day number in UTC.
    static func todayUTC() -> Int64 {
        let now = Int64(Date().timeIntervalSince1970)
        return floorDiv(now, 86_400)
    }

    /// `YYYY-MM-DD` for a day number.
    static func dateString(days: Int64) -> String {
        let c = civil(fromDays: days)
        return "\(pad(c.year, 4))-\(pad(Int64(c.month), 2))-\(pad(Int64(c.day), 2))"
    }

    /// RFC 3339 UTC with milliseconds (`2026-11-22T10:00:00.000Z`) for epoch seconds.
    static func timestamp(epochSeconds: Int64) -> String {
        let days = floorDiv(epochSeconds, 86_400)
        let secs = epochSeconds - days * 86_400
        let h = secs / 3600, m = (secs % 3600) / 60, s = secs % 60
        return "\(dateString(days: days))T\(pad(h, 2)):\(pad(m, 2)):\(pad(s, 2)).000Z"
    }

    /// True when `text` is a real calendar date written `YYYY-MM-DD`.
    static func isValidDate(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let y = Int64(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]),
              (1...12).contains(m), d >= 1
        else { return false }
        // Round-trip through the day number rejects 2026-02-30 and friends.
        let back = civil(fromDays: days(year: y, month: m, day: d))
        return back.year == y && back.month == m && back.day == d
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let s = String(value)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}
