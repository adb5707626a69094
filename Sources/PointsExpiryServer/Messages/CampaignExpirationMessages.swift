import APIMessages
import Codecs
import ExpiryDomain

/// A `CampaignExpiration` response: the aggregate's campaign-wide totals and the request's range.
struct CampaignExpirationView {
    var campaign: String
    var snapshot: CampaignSnapshot
    var range: CampaignRange

    /// ProtoJSON in the contract's field order, every scalar emitted (as the other responses).
    var json: [UInt8] {
        let aggregate = snapshot.aggregate
        var w = JSONWriter(capacity: 256 + range.days.count * 96)
        w.appendRaw("{\"campaign\":")
        w.appendString(campaign)
        w.appendRaw(",\"campaignId\":")
        w.appendString(aggregate.campaignId)
        w.appendRaw(",\"generatedAt\":")
        w.appendTimestamp(Timestamp(millisecondsSince1970: snapshot.generatedAt))
        w.appendRaw(",\"activePoints\":")
        w.appendInt64String(aggregate.activePoints)
        w.appendRaw(",\"expiringPoints\":")
        w.appendInt64String(range.expiringPoints)
        w.appendRaw(",\"cards\":")
        w.appendInt64String(aggregate.cards)
        w.appendRaw(",\"expiringCards\":")
        w.appendInt64String(range.expiringCards)
        w.appendRaw(",\"expirations\":[")
        for (i, day) in range.days.enumerated() {
            if i > 0 { w.appendRaw(byte: UInt8(ascii: ",")) }
            w.appendRaw("{\"date\":")
            w.appendDate(day.date)
            w.appendRaw(",\"points\":")
            w.appendInt64String(day.points)
            w.appendRaw(",\"buckets\":")
            w.appendInt64String(day.buckets)
            w.appendRaw(",\"cards\":")
            w.appendInt64String(day.cards)
            w.appendRaw(byte: UInt8(ascii: "}"))
        }
        w.appendRaw("]}")
        return w.bytes
    }

    var protoMessage: Pointsexpiry_V1_CampaignExpiration {
        var message = Pointsexpiry_V1_CampaignExpiration()
        message.campaign = campaign
        message.campaignID = snapshot.aggregate.campaignId
        message.generatedAt = Timestamp(millisecondsSince1970: snapshot.generatedAt).protoMessage
        message.activePoints = snapshot.aggregate.activePoints
        message.expiringPoints = range.expiringPoints
        message.cards = snapshot.aggregate.cards
        message.expiringCards = range.expiringCards
        message.expirations = range.days.map { day in
            var out = Pointsexpiry_V1_CampaignExpirationDate()
            out.date = day.date.iso
            out.points = day.points
            out.buckets = day.buckets
            out.cards = day.cards
            return out
        }
        return message
    }
}
