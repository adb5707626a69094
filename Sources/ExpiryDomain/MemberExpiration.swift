/// One loyalty points bucket as Voucherify reports it.
public struct PointsBucket: Equatable, Sendable {
    public var id: String
    public var voucherId: String
    public var campaignId: String
    public var points: Int64
    public var status: String
    /// Last day the points can be used; nil when the bucket never expires.
    public var expiresAt: CalendarDate?
    public var createdAt: Timestamp?
    public var updatedAt: Timestamp?

    public init(
        id: String, voucherId: String, campaignId: String, points: Int64, status: String,
        expiresAt: CalendarDate?, createdAt: Timestamp?, updatedAt: Timestamp?
    ) {
        self.id = id
        self.voucherId = voucherId
        self.campaignId = campaignId
        self.points = points
        self.status = status
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Voucherify's status has no documented enum, so compare ASCII case-insensitively
    /// (`isActiveStatus`, which the campaign export's rows use too).
    public var isActive: Bool { isActiveStatus(status.utf8) }
}

/// Points that stop being usable after `date`.
public struct ExpirationDate: Equatable, Sendable {
    public var date: CalendarDate
    public var points: Int64
    /// How many buckets with points expire that day.
    public var buckets: Int32

    public init(date: CalendarDate, points: Int64, buckets: Int32) {
        self.date = date
        self.points = points
        self.buckets = buckets
    }
}

extension [ExpirationDate] {
    /// Points on dates strictly before `limit`; 0 when no limit was asked for.
    public func points(before limit: CalendarDate?) -> Int64 {
        guard let limit else { return 0 }
        var total: Int64 = 0
        for expiration in self where expiration.date < limit {
            total = total.addingSaturating(expiration.points)
        }
        return total
    }
}


/// The simplified answer for one member: totals and expirations grouped by day.
public struct MemberExpiration: Equatable, Sendable {
    public var campaign: String
    public var campaignId: String
    public var member: String
    public var voucherId: String
    public var activePoints: Int64
    public var expiringPoints: Int64
    public var nonExpiringPoints: Int64
    /// Dates with a positive sum of ACTIVE points, ascending.
    public var expirations: [ExpirationDate]
    /// Every bucket, in Voucherify's order.
    public var buckets: [PointsBucket]
    public var fetchedAt: Timestamp

    public var nextExpiration: ExpirationDate? { expirations.first }

    public init(campaign: String, member: String, buckets: [PointsBucket], fetchedAt: Timestamp) {
        self.campaign = campaign
        self.member = member
        self.buckets = buckets
        self.fetchedAt = fetchedAt
        campaignId = buckets.first { !$0.campaignId.isEmpty }?.campaignId ?? ""
        voucherId = buckets.first { !$0.voucherId.isEmpty }?.voucherId ?? ""

        var expiring: Int64 = 0
        var nonExpiring: Int64 = 0
        var byDate: [CalendarDate: (points: Int64, buckets: Int32)] = [:]
        for bucket in buckets where bucket.isActive {
            guard let date = bucket.expiresAt else {
                nonExpiring = nonExpiring.addingSaturating(bucket.points)
                continue
            }
            expiring = expiring.addingSaturating(bucket.points)
            var entry = byDate[date, default: (0, 0)]
            entry.points = entry.points.addingSaturating(bucket.points)
            if bucket.points > 0 { entry.buckets += 1 }
            byDate[date] = entry
        }
        expiringPoints = expiring
        nonExpiringPoints = nonExpiring
        activePoints = expiring.addingSaturating(nonExpiring)
        expirations = byDate
            .filter { $0.value.points > 0 }
            .map { ExpirationDate(date: $0.key, points: $0.value.points, buckets: $0.value.buckets) }
            .sorted { $0.date < $1.date }
    }

}
