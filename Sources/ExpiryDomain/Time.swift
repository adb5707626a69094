import Codecs
import Foundation

/// A day in the proleptic Gregorian calendar, years 0000–9999 (what `YYYY-MM-DD` can spell).
public struct CalendarDate: Comparable, Hashable, Sendable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    @inlinable
    public init?(year: Int, month: Int, day: Int) {
        guard (0...9999).contains(year), (1...12).contains(month),
              (1...daysInMonth(year: year, month: month)).contains(day) else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Strict `YYYY-MM-DD`: exactly ten characters, real dates only.
    public init?(iso: some StringProtocol) {
        guard let date = withContiguousUTF8(iso, { parseISODate($0[...]) }) else { return nil }
        self = date
    }

    /// The date `days` after 1970-01-01 (negative: before it). No range check: for instants
    /// outside years 0000–9999 (only ever formatted, never stored as dates) the fields go out of
    /// range too.
    public init(daysSince1970 days: Int) {
        (year, month, day) = civilFromDays(days)
    }

    /// The date `days` after 1970-01-01, or nil outside years 0000–9999 (for day numbers read
    /// back from storage, which must name a real date).
    public init?(validatingDaysSince1970 days: Int) {
        let civil = civilFromDays(days)
        self.init(year: civil.year, month: civil.month, day: civil.day)
    }

    public var daysSince1970: Int { daysFromCivil(year: year, month: month, day: day) }

    public var iso: String {
        var out: [UInt8] = []
        out.reserveCapacity(10)
        appendISO(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { iso }

    public func appendISO(to out: inout [UInt8]) {
        appendPadded(year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(month, width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(day, width: 2, to: &out)
    }

    public static func < (lhs: CalendarDate, rhs: CalendarDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }
}

/// An instant with millisecond precision.
public struct Timestamp: Comparable, Hashable, Sendable, CustomStringConvertible {
    public let millisecondsSince1970: Int64

    public init(millisecondsSince1970: Int64) {
        self.millisecondsSince1970 = millisecondsSince1970
    }

    public static func now() -> Timestamp {
        Timestamp(millisecondsSince1970: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }

    /// RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`. Fractions of any length are truncated
    /// to milliseconds; `T` and `Z` may be lowercase (RFC 3339 §5.6 allows it).
    public init?(rfc3339: some StringProtocol) {
        guard let ms = withContiguousUTF8(rfc3339, parseRFC3339) else { return nil }
        millisecondsSince1970 = ms
    }

    /// Always UTC with milliseconds: `2026-11-22T10:00:00.000Z`.
    public var rfc3339: String {
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendRFC3339(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { rfc3339 }

    public func appendRFC3339(to out: inout [UInt8]) {
        let (days, msOfDay) = millisecondsSince1970.dividedFlooring(by: 86_400_000)
        CalendarDate(daysSince1970: Int(days)).appendISO(to: &out)
        out.append(UInt8(ascii: "T"))
        appendPadded(Int(msOfDay / 3_600_000), width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(Int(msOfDay / 60_000 % 60), width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(Int(msOfDay / 1000 % 60), width: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendPadded(Int(msOfDay % 1000), width: 3, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    /// Saturates instead of trapping: a huge configured TTL must not crash the service.
    public func adding(milliseconds: Int64) -> Timestamp {
        let (sum, overflow) = millisecondsSince1970.addingReportingOverflow(milliseconds)
        return Timestamp(millisecondsSince1970: overflow ? (milliseconds > 0 ? .max : .min) : sum)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSince1970 < rhs.millisecondsSince1970
    }
}

extension Int64 {
    /// Floor division with a non-negative remainder, so instants before 1970 format correctly.
    func dividedFlooring(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let q = self / divisor
        let r = self % divisor
        return r < 0 ? (q - 1, r + divisor) : (q, r)
    }
}

func withContiguousUTF8<R>(_ text: some StringProtocol, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let result = text.utf8.withContiguousStorageIfAvailable(body) { return result }
    return Array(text.utf8).withUnsafeBufferPointer(body)
}

@usableFromInline
func isLeapYear(_ year: Int) -> Bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

@usableFromInline
func daysInMonth(year: Int, month: Int) -> Int {
    switch month {
    case 2: return isLeapYear(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

// Days between 1970-01-01 and a civil date and back (H. Hinnant's algorithms, valid for all Int).
func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}

func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
}

/// Zero-pads to `width` digits; wider values (years past 9999 from extreme timestamps) keep all digits.
func appendPadded(_ value: Int, width: Int, to out: inout [UInt8]) {
    if value < 0 { out.append(UInt8(ascii: "-")) }
    appendDecimal(UInt64(value.magnitude), minimumDigits: width, to: &out)
}

/// Reads exactly `count` ASCII digits at `offset`.
func fixedDigits(_ bytes: Slice<UnsafeBufferPointer<UInt8>>, _ offset: Int, _ count: Int) -> Int? {
    var value = 0
    for k in 0..<count {
        let byte = bytes[bytes.startIndex + offset + k]
        guard isDigit(byte) else { return nil }
        value = value * 10 + Int(byte - UInt8(ascii: "0"))
    }
    return value
}

func parseISODate(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> CalendarDate? {
    guard bytes.count == 10,
          bytes[bytes.startIndex + 4] == UInt8(ascii: "-"), bytes[bytes.startIndex + 7] == UInt8(ascii: "-"),
          let year = fixedDigits(bytes, 0, 4), let month = fixedDigits(bytes, 5, 2), let day = fixedDigits(bytes, 8, 2)
    else { return nil }
    return CalendarDate(year: year, month: month, day: day)
}

func parseRFC3339(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
    guard bytes.count >= 20, let date = parseISODate(bytes[0..<10]),
          bytes[10] | 0x20 == UInt8(ascii: "t"),
          bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
          let hour = fixedDigits(bytes[...], 11, 2), hour < 24,
          let minute = fixedDigits(bytes[...], 14, 2), minute < 60,
          let second = fixedDigits(bytes[...], 17, 2), second < 60
    else { return nil }
    var index = 19
    var millis = 0
    if bytes[index] == UInt8(ascii: ".") {
        index += 1
        let fractionStart = index
        while index < bytes.count, isDigit(bytes[index]) {
            if index - fractionStart < 3 { millis = millis * 10 + Int(bytes[index] - UInt8(ascii: "0")) }
            index += 1
        }
        let fractionDigits = index - fractionStart
        guard fractionDigits > 0 else { return nil }
        for _ in min(fractionDigits, 3)..<3 { millis *= 10 }
    }
    guard index < bytes.count else { return nil }
    var offsetSeconds = 0
    switch bytes[index] {
    case UInt8(ascii: "Z"), UInt8(ascii: "z"):
        index += 1
    case UInt8(ascii: "+"), UInt8(ascii: "-"):
        guard bytes.count - index == 6, bytes[index + 3] == UInt8(ascii: ":"),
              let offsetHour = fixedDigits(bytes[...], index + 1, 2), offsetHour < 24,
              let offsetMinute = fixedDigits(bytes[...], index + 4, 2), offsetMinute < 60
        else { return nil }
        offsetSeconds = (offsetHour * 60 + offsetMinute) * 60
        if bytes[index] == UInt8(ascii: "-") { offsetSeconds = -offsetSeconds }
        index += 6
    default:
        return nil
    }
    guard index == bytes.count else { return nil }
    let seconds = date.daysSince1970 * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
    return Int64(seconds) * 1000 + Int64(millis)
}

extension JSONWriter {
    /// A quoted RFC 3339 UTC timestamp with milliseconds.
    public mutating func appendTimestamp(_ timestamp: Timestamp) {
        appendQuoted { timestamp.appendRFC3339(to: &$0) }
    }

    /// A quoted `YYYY-MM-DD` date.
    public mutating func appendDate(_ date: CalendarDate) {
        appendQuoted { date.appendISO(to: &$0) }
    }
}
