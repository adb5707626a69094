import ExpiryDomain

/// Voucherify's nightly expiry for one card. Run at the start of day `asOf`, it deducts every
/// bucket whose last valid day (`expires_at`) has passed, i.e. is before `asOf`. Buckets without
/// `expires_at` never expire.
enum PointsExpiryJob {
    /// Removes the due buckets from `member` and returns them, in the order they were served.
    static func expire(_ member: inout LoyaltyMember, asOf: CalendarDate) -> [PointsBucket] {
        let isDue = { (bucket: PointsBucket) -> Bool in
            // Stored dates were validated on input, so an unreadable one cannot occur; it would never expire.
            bucket.expiresAt.flatMap { CalendarDate(iso: $0) }.map { $0 < asOf } ?? false
        }
        let due = member.buckets.filter(isDue)
        member.buckets.removeAll(where: isDue)
        return due
    }
}
