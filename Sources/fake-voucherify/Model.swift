import Codecs

/// One loyalty points bucket as the fake keeps it.
struct PointsBucket {
    var id: String
    var points: Int64
    /// `YYYY-MM-DD`, the last valid day; nil when the bucket never expires.
    var expiresAt: String?
    var status: String
    var createdAt: String
    var updatedAt: String?

    /// Voucherify's wire form of a bucket (`GET …/points-expiration` item).
    func json(voucherId: String, campaignId: String) -> JSONValue {
        var bucket: JSONObject = [
            "id": .string(id),
            "voucher_id": .string(voucherId),
            "campaign_id": .string(campaignId),
            "bucket": .object(["total_points": .integer(points)]),
            "status": .string(status),
        ]
        if let expiresAt { bucket.members.append(("expires_at", .string(expiresAt))) }
        bucket.members.append(("created_at", .string(createdAt)))
        if let updatedAt { bucket.members.append(("updated_at", .string(updatedAt))) }
        bucket.members.append(("object", .string("loyalty_points_bucket")))
        return .object(bucket)
    }
}

/// A loyalty card (member) in one campaign; `buckets` are kept in the order they are served.
struct LoyaltyMember {
    var code: String
    var voucherId: String
    var buckets: [PointsBucket]
    /// Buckets Voucherify's expiry job deducted, status `EXPIRED`: the member endpoint never
    /// serves them, only the points-expiration export lists them.
    var expiredBuckets: [PointsBucket] = []

    /// The card's balance as Voucherify reports it: points in ACTIVE buckets.
    var activePoints: Int64 {
        buckets.reduce(0) { $0 + ($1.status == "ACTIVE" ? $1.points : 0) }
    }
}

final class LoyaltyCampaign {
    let id: String
    let name: String
    var members: [String: LoyaltyMember]

    init(id: String, name: String, members: [String: LoyaltyMember] = [:]) {
        self.id = id
        self.name = name
        self.members = members
    }
}

/// Every campaign the fake serves. Looked up by id first, then by name (as Voucherify does).
final class CampaignStore {
    private(set) var campaigns: [LoyaltyCampaign]

    init(campaigns: [LoyaltyCampaign]) {
        self.campaigns = campaigns
    }

    func campaign(matching idOrName: String) -> LoyaltyCampaign? {
        campaigns.first { $0.id == idOrName } ?? campaigns.first { $0.name == idOrName }
    }

    /// The campaign matching `idOrName`, created (id and name as given, unless overridden) when absent.
    func campaignCreatingIfNeeded(_ idOrName: String, id: String?, name: String?) -> LoyaltyCampaign {
        if let existing = campaign(matching: idOrName) { return existing }
        let created = LoyaltyCampaign(id: id ?? idOrName, name: name ?? idOrName)
        campaigns.append(created)
        return created
    }
}
