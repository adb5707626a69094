import ExpiryDomain

/// Voucherify's nightly expiry for one card. Run at the start of day `asOf`, it deducts every
/// bucket whose last valid day (`expires_at`) has passed, i.e. is before `asOf`. Buckets without
/// `expires_at` never expire.
enum PointsExpiryJob {
    static let expiredStatus = "EXPIRED"

    /// Moves the due buckets from `member.buckets` to `member.expiredBuckets` (status EXPIRED, so
    /// exports still list them) and returns them as they were served: the webhook carries them
    /// with their status still ACTIVE, as Voucherify's does.
    static func expire(_ member: inout LoyaltyMember, asOf: CalendarDate) -> [PointsBucket] {
        let isDue = { (bucket: PointsBucket) -> Bool in
            // Stored dates were validated on input, so an unreadable one cannot occur; it would never expire.
            bucket.expiresAt.flatMap { CalendarDate(iso: $0) }.map { $0 < asOf } ?? false
        }
        let due = member.buckets.filter(isDue)
        member.buckets.removeAll(where: isDue)
        member.expiredBuckets += due.map { bucket in
            var expired = bucket
            expired.status = expiredStatus
            return expired
        }
        return due
    }
}
