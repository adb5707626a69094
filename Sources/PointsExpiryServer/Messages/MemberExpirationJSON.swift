import Codecs
import ExpiryDomain
import RPC

/// `MemberExpiration` as ProtoJSON, in the contract's field order.
extension MemberExpiration {
    /// The response in one codec; built through the cache record so there is one encoder.
    func responseBody(_ codec: MessageCodec, expiringBefore: CalendarDate?) throws(RPCError) -> [UInt8] {
        try CachedAnswer(self, freshUntil: fetchedAt, notAfter: fetchedAt).responseBody(codec, expiringBefore: expiringBefore)
    }
}

/// Encodes the response in the contract's field order; `pointsExpiringBefore` is appended per request.
func encodeResponsePrefix(_ m: MemberExpiration) -> [UInt8] {
    var w = JSONWriter(capacity: 320 + m.buckets.count * 160 + m.expirations.count * 48)
    w.appendRaw("{\"campaign\":")
    w.appendString(m.campaign)
    w.appendRaw(",\"campaignId\":")
    w.appendString(m.campaignId)
    w.appendRaw(",\"member\":")
    w.appendString(m.member)
    w.appendRaw(",\"voucherId\":")
    w.appendString(m.voucherId)
    w.appendRaw(",\"activePoints\":")
    w.appendInt64String(m.activePoints)
    w.appendRaw(",\"expiringPoints\":")
    w.appendInt64String(m.expiringPoints)
    w.appendRaw(",\"nonExpiringPoints\":")
    w.appendInt64String(m.nonExpiringPoints)
    if let next = m.nextExpiration {
        w.appendRaw(",\"nextExpiration\":")
        appendExpiration(next, to: &w)
    }
    w.appendRaw(",\"expirations\":[")
    for (i, expiration) in m.expirations.enumerated() {
        if i > 0 { w.appendRaw(byte: UInt8(ascii: ",")) }
        appendExpiration(expiration, to: &w)
    }
    w.appendRaw("],\"buckets\":[")
    for (i, bucket) in m.buckets.enumerated() {
        if i > 0 { w.appendRaw(byte: UInt8(ascii: ",")) }
        w.appendRaw("{\"id\":")
        w.appendString(bucket.id)
        w.appendRaw(",\"points\":")
        w.appendInt64String(bucket.points)
        w.appendRaw(",\"status\":")
        w.appendString(bucket.status)
        w.appendRaw(",\"expiresAt\":")
        if let date = bucket.expiresAt { w.appendDate(date) } else { w.appendRaw("\"\"") }
        if let created = bucket.createdAt {
            w.appendRaw(",\"createdAt\":")
            w.appendTimestamp(created)
        }
        if let updated = bucket.updatedAt {
            w.appendRaw(",\"updatedAt\":")
            w.appendTimestamp(updated)
        }
        w.appendRaw(byte: UInt8(ascii: "}"))
    }
    w.appendRaw("],\"fetchedAt\":")
    w.appendTimestamp(m.fetchedAt)
    return w.bytes
}

private func appendExpiration(_ e: ExpirationDate, to w: inout JSONWriter) {
    w.appendRaw("{\"date\":")
    w.appendDate(e.date)
    w.appendRaw(",\"points\":")
    w.appendInt64String(e.points)
    w.appendRaw(",\"buckets\":")
    w.appendNumber(Int64(e.buckets))
    w.appendRaw(byte: UInt8(ascii: "}"))
}
