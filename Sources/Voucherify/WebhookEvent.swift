import Codecs
import ExpiryDomain

/// Voucherify webhooks as Voucherify sends them: what the payload says (`WebhookEvent`) and the
/// bytes its signature covers. Pure: no I/O, no crypto (the HMAC lives in `WebhookSigner`).
public enum WebhookEvent: Equatable, Sendable {
    case pointsExpired(PointsExpiredEvent)
    /// Any other event type: acknowledged and ignored, so Voucherify never disables the webhook.
    case other(type: String)

    public static let pointsExpiredType = "voucher.loyalty_card.points_expired"

    /// Reads the v2024-01-01 envelope (`{id, type, data, event: {id, …}, …}`) or the bare event
    /// data object that older documentation shows. A bare object has no `type`; it is a
    /// points_expired event when its `transaction.type` is `POINTS_EXPIRATION`, or when it carries
    /// a `voucher` and the `buckets` that expired.
    public init(payload: JSONValue) throws(MalformedWebhook) {
        guard case .object(let root) = payload else {
            throw MalformedWebhook("the webhook body must be a JSON object")
        }
        let data: JSONObject
        let type: String
        var eventID: String?
        if let declared = root["type"]?.stringValue {
            type = declared
            data = root["data"]?.objectValue ?? root
            eventID = root["event"]?.objectValue?["id"]?.stringValue
        } else {
            data = root
            let transactionType = data["transaction"]?.objectValue?["type"]?.stringValue
            let looksExpired = transactionType == "POINTS_EXPIRATION"
                || (transactionType == nil && data["voucher"]?.objectValue != nil && data["buckets"]?.arrayValue != nil)
            type = looksExpired ? Self.pointsExpiredType : "unknown"
        }
        guard type == Self.pointsExpiredType else {
            self = .other(type: type)
            return
        }
        if eventID?.isEmpty ?? true {
            eventID = data["transaction"]?.objectValue?["id"]?.stringValue
        }
        self = .pointsExpired(try PointsExpiredEvent(data: data, eventID: eventID))
    }
}

/// `voucher.loyalty_card.points_expired`: whose cached answers to drop, and how to recognise a
/// redelivery. The campaign (`data.campaign`, `data.voucher.campaign[_id]`) is not needed: card
/// codes are unique within a project, and the member's answers go under every campaign spelling.
public struct PointsExpiredEvent: Equatable, Sendable {
    /// The loyalty card code (`data.voucher.code`).
    public var member: String
    /// `event.id`, else `data.transaction.id`; nil when the payload has neither.
    public var eventID: String?

    public init(member: String, eventID: String?) {
        self.member = member
        self.eventID = eventID
    }

    init(data: JSONObject, eventID: String?) throws(MalformedWebhook) {
        guard let member = data["voucher"]?.objectValue?["code"]?.stringValue, !member.isEmpty else {
            throw MalformedWebhook("a points_expired event must name the loyalty card in data.voucher.code")
        }
        let eventID = eventID.flatMap { $0.isEmpty ? nil : $0 }
        for identifier in [member, eventID ?? ""] where identifier.utf8.count > maxIdentifierBytes {
            throw MalformedWebhook("the card code or event id in the event is longer than \(maxIdentifierBytes) bytes")
        }
        self.init(member: member, eventID: eventID)
    }
}

/// A webhook payload that is not a usable event, with the reason.
public struct MalformedWebhook: Error, Equatable, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
}

public enum WebhookPayload {
    /// The payload serialised without whitespace, as Voucherify signs it: spaces, tabs, CR and LF
    /// outside JSON strings are removed; nothing else changes (escapes, key order, number
    /// spellings all stay as received).
    public static func removingWhitespace(_ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(body.count)
        var inString = false
        var escaped = false
        for byte in body {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                out.append(byte)
                continue
            }
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D:
                continue
            case UInt8(ascii: "\""):
                inString = true
            default:
                break
            }
            out.append(byte)
        }
        return out
    }
}

