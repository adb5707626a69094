import Codecs
import ExpiryDomain
import Voucherify

/// The `voucher.loyalty_card.points_expired` event Voucherify sends after its expiry job deducted
/// buckets from a card: the v2024-01-01 envelope, or the bare `data` object older docs show.
struct PointsExpiredWebhook {
    enum Shape: String, Decodable {
        case envelope, data
    }

    static let projectId = "proj_fake"
    static let channel: JSONValue = .object(["channel": .string("fake-voucherify")])

    let ids: EventIds
    let createdAt: Timestamp
    let campaign: LoyaltyCampaign
    /// The card after the expiry.
    let member: LoyaltyMember
    let expired: [PointsBucket]

    var expiredPoints: Int64 { expired.reduce(0) { $0 + $1.points } }

    func json(_ shape: Shape) -> JSONValue {
        switch shape {
        case .data: return data
        case .envelope: return envelope
        }
    }

    private var envelope: JSONValue {
        let type = JSONValue.string(WebhookEvent.pointsExpiredType)
        let created = JSONValue.string(createdAt.rfc3339)
        return .object([
            "id": .string(ids.webhook),
            "project_id": .string(PointsExpiredWebhook.projectId),
            "created_at": created,
            "type": type,
            "data": data,
            "source": PointsExpiredWebhook.channel,
            "event": .object([
                "id": .string(ids.event),
                "type": type,
                "created_at": created,
                "entity_id": .string(member.voucherId),
                "group_id": .string(ids.group),
                "event_source": PointsExpiredWebhook.channel,
            ]),
        ])
    }

    private var data: JSONValue {
        let balance = JSONValue.integer(member.activePoints)
        return .object([
            "voucher": .object([
                "id": .string(member.voucherId),
                "code": .string(member.code),
                "campaign": .string(campaign.name),
                "campaign_id": .string(campaign.id),
                "holder_id": .null,
                "loyalty_card": .object(["points": balance, "balance": balance]),
            ]),
            "points": .integer(expiredPoints),
            "campaign": .object(["id": .string(campaign.id), "name": .string(campaign.name)]),
            "customer": .null,
            // As Voucherify sends them: the wire form the API served, status still ACTIVE.
            "buckets": .array(expired.map { $0.json(voucherId: member.voucherId, campaignId: campaign.id) }),
            "transaction": .object([
                "id": .string(ids.transaction),
                "type": .string("POINTS_EXPIRATION"),
                "voucher_id": .string(member.voucherId),
                "campaign_id": .string(campaign.id),
            ]),
        ])
    }
}
