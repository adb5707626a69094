import APIMessages
import ExpiryDomain
import RPC
import SwiftProtobuf

// The generated messages of the contract, built from domain values. The binary codec writes
// them directly; the JSON responses are written by hand (MemberExpirationJSON.swift,
// BatchResponses.swift) because the contract emits every scalar even when zero, which
// swift-protobuf's JSON encoder cannot, and tests check both codecs decode to the same message.

extension MemberExpiration {
    /// The response message without `pointsExpiringBefore`, which each request adds.
    var protoMessage: Pointsexpiry_V1_MemberExpiration {
        var message = Pointsexpiry_V1_MemberExpiration()
        message.campaign = campaign
        message.campaignID = campaignId
        message.member = member
        message.voucherID = voucherId
        message.activePoints = activePoints
        message.expiringPoints = expiringPoints
        message.nonExpiringPoints = nonExpiringPoints
        if let nextExpiration { message.nextExpiration = nextExpiration.protoMessage }
        message.expirations = expirations.map(\.protoMessage)
        message.buckets = buckets.map { bucket in
            var out = Pointsexpiry_V1_PointsBucket()
            out.id = bucket.id
            out.points = bucket.points
            out.status = bucket.status
            out.expiresAt = bucket.expiresAt?.iso ?? ""
            if let created = bucket.createdAt { out.createdAt = created.protoMessage }
            if let updated = bucket.updatedAt { out.updatedAt = updated.protoMessage }
            return out
        }
        message.fetchedAt = fetchedAt.protoMessage
        return message
    }
}

extension ExpirationDate {
    var protoMessage: Pointsexpiry_V1_ExpirationDate {
        var message = Pointsexpiry_V1_ExpirationDate()
        message.date = date.iso
        message.points = points
        message.buckets = buckets
        return message
    }
}

extension Timestamp {
    var protoMessage: Google_Protobuf_Timestamp {
        let (seconds, milliseconds) = millisecondsSince1970.quotientAndRemainder(dividingBy: 1000)
        // Before 1970 the remainder is negative; a Timestamp's nanos never are.
        return milliseconds < 0
            ? Google_Protobuf_Timestamp(seconds: seconds - 1, nanos: Int32(milliseconds + 1000) * 1_000_000)
            : Google_Protobuf_Timestamp(seconds: seconds, nanos: Int32(milliseconds) * 1_000_000)
    }
}

extension RPCError {
    var protoMessage: Pointsexpiry_V1_Error {
        var message = Pointsexpiry_V1_Error()
        message.code = code.rawValue
        message.message = self.message
        return message
    }
}

extension SwiftProtobuf.Message {
    /// The binary encoding. Every generated message here has only known, set-able fields, so
    /// encoding cannot fail; an empty body would still be a valid (empty) message.
    var protoBytes: [UInt8] { (try? serializedBytes()) ?? [] }
}

/// A reply in the call's codec: the hand-written JSON or the generated message's binary form.
func reply(_ codec: MessageCodec, headers: [(name: String, value: String)] = [], json: () -> [UInt8],
           proto: () -> some SwiftProtobuf.Message) -> UnaryReply {
    switch codec {
    case .json: return UnaryReply(body: json(), headers: headers)
    case .proto: return UnaryReply(body: proto().protoBytes, headers: headers)
    }
}
