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

    /// How long an answer fetched at `fetchedAt` may be served: `maxTTLSeconds`, cut short by
    /// the deduction for the earliest expiring bucket. Nil when that is not after `fetchedAt`
    /// (the answer must not be cached at all).
    public func cacheNotAfter(fetchedAt: Timestamp, earliestExpiry: CalendarDate?, maxTTLSeconds: Int) -> Timestamp? {
        let (ttlMilliseconds, overflow) = Int64(maxTTLSeconds).multipliedReportingOverflow(by: 1000)
        var limit = fetchedAt.adding(milliseconds: overflow ? (maxTTLSeconds > 0 ? .max : .min) : ttlMilliseconds)
        if let earliestExpiry {
            limit = min(limit, deductionInstant(lastValidDay: earliestExpiry))
        }
        return limit > fetchedAt ? limit : nil
    }

    private func offset(at unixSeconds: Int64) -> Int64 {
        Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(unixSeconds))))
    }
}
