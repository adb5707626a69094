import Foundation

/// When Voucherify deducts expired points: at the midnight that ends a bucket's last valid day,
/// in the project's time zone. Cached answers must not outlive that instant.
public struct DeductionSchedule: Sendable {
    public let timeZone: TimeZone

    /// Nil for an identifier that is not a known IANA zone.
    public init?(timeZoneIdentifier: String) {
        guard let zone = TimeZone(identifier: timeZoneIdentifier) else { return nil }
        timeZone = zone
    }

    /// The first instant of the day after `lastValidDay` in the zone. When DST skips that
    /// midnight the day starts at the transition; when midnight happens twice, the first counts.
    public func deductionInstant(lastValidDay: CalendarDate) -> Timestamp {
        // Local midnight expressed as if the zone were UTC.
        let localMidnight = Int64(lastValidDay.daysSince1970 + 1) * 86_400
        // At most one offset change happens within a day of any midnight in real zones, so the
        // offsets a day before and a day after are the only candidates.
        let offsetBefore = offset(at: localMidnight - 86_400)
        let offsetAfter = offset(at: localMidnight + 86_400)
        let candidates = [localMidnight - offsetBefore, localMidnight - offsetAfter]
            .filter { offset(at: $0) == localMidnight - $0 }
        if let first = candidates.min() {
            return Timestamp(millisecondsSince1970: first * 1000)
        }
        // Midnight falls in a gap: the day begins at the transition, the first instant whose
        // local time is at or past midnight. It lies between the two candidates.
        var low = localMidnight - offsetAfter   // local time before midnight
        var high = localMidnight - offsetBefore // local time after midnight
        while high - low > 1 {
            let middle = low + (high - low) / 2
            if middle + offset(at: middle) >= localMidnight { high = middle } else { low = middle }
        }
        return Timestamp(millisecondsSince1970: high * 1000)
    }

    /// The first deduction strictly after `instant` for buckets whose last valid days are
    /// `lastValidDays` (ascending): when an answer read at `instant` stops being true. Days whose
    /// deduction already passed are skipped: Voucherify's nightly job has not removed those
    /// points yet, and the webhook reports when it does. Nil when no deduction lies ahead.
    public func nextDeduction(after instant: Timestamp, lastValidDays: some Sequence<CalendarDate>) -> Timestamp? {
        for day in lastValidDays {
            let deduction = deductionInstant(lastValidDay: day)
            if deduction > instant { return deduction }
        }
        return nil
    }

    /// The calendar day `instant` falls on in the zone ("today" for a request arriving then).
    public func calendarDate(at instant: Timestamp) -> CalendarDate {
        let seconds = instant.millisecondsSince1970.dividedFlooring(by: 1000).quotient
        let localDay = (seconds + offset(at: seconds)).dividedFlooring(by: 86_400).quotient
        return CalendarDate(daysSince1970: Int(localDay))
    }

    private func offset(at unixSeconds: Int64) -> Int64 {
        Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(unixSeconds))))
    }
}
