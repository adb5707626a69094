/// Voucherify webhooks as forwarded to `POST /webhooks/voucherify`: what the payload says
/// (`WebhookEvent`), the bytes its signature covers, and every way a delivery is turned away
/// (`WebhookRejection`). Pure: no I/O, no crypto (the HMAC itself lives in `WebhookSigning`).
public enum WebhookEvent: Equatable, Sendable {
    case pointsExpired(PointsExpiredEvent)
    /// Any other event type: acknowledged and ignored, so Voucherify never disables the webhook.
    case other(type: String)

    public static let pointsExpiredType = "voucher.loyalty_card.points_expired"

    /// Reads the v2024-01-01 envelope (`{id, type, data, event: {id, …}, …}`) or the bare event
    /// data object that older documentation shows. A bare object has no `type`; it is a
    /// points_expired event when its `transaction.type` is `POINTS_EXPIRATION`, or when it carries
    /// a `voucher` and the `buckets` that expired.
    public init(payload: JSONValue) throws(WebhookRejection) {
        guard case .object(let root) = payload else {
            throw .malformed("the webhook body must be a JSON object")
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

    init(data: JSONObject, eventID: String?) throws(WebhookRejection) {
        guard let member = data["voucher"]?.objectValue?["code"]?.stringValue, !member.isEmpty else {
            throw .malformed("a points_expired event must name the loyalty card in data.voucher.code")
        }
        let eventID = eventID.flatMap { $0.isEmpty ? nil : $0 }
        for identifier in [member, eventID ?? ""] where identifier.utf8.count > maxIdentifierBytes {
            throw .malformed("the card code or event id in the event is longer than \(maxIdentifierBytes) bytes")
        }
        self.init(member: member, eventID: eventID)
    }
}

/// Why a webhook delivery was not acknowledged, with the HTTP status the relay sees. 4xx means
/// "this delivery will never succeed", 503 means "retry later".
public enum WebhookRejection: Error, Equatable, Sendable {
    /// `WEBHOOK_SECRET` is not set: the endpoint is off.
    case notConfigured
    case missingSignature
    case badSignature
    case malformed(String)
    case tooLarge(limit: Int)
    /// A `content-encoding` was applied: the signature covers the payload as Voucherify sent it.
    case unsupportedEncoding(String)
    /// Redis could not record the invalidation; nothing was acknowledged.
    case cacheUnavailable(String)

    public var httpStatus: Int {
        switch self {
        case .notConfigured, .cacheUnavailable: return 503
        case .missingSignature, .badSignature: return 401
        case .malformed: return 400
        case .tooLarge: return 413
        case .unsupportedEncoding: return 415
        }
    }

    /// The body's error, in the same `{"code","message"}` shape as every other error we send.
    public var error: ConnectError {
        switch self {
        case .notConfigured:
            return ConnectError(.unavailable, "the webhook endpoint is not configured: set WEBHOOK_SECRET to Voucherify's webhook secret")
        case .missingSignature:
            return ConnectError(.unauthenticated, "the x-voucherify-signature header is missing")
        case .badSignature:
            return ConnectError(.unauthenticated, "x-voucherify-signature does not match the payload (check WEBHOOK_SECRET and that the relay forwards the body unchanged)")
        case .malformed(let detail):
            return ConnectError(.invalidArgument, detail)
        case .tooLarge(let limit):
            return ConnectError(.resourceExhausted, "the webhook body exceeds \(limit) bytes")
        case .unsupportedEncoding(let encoding):
            return ConnectError(.unimplemented, "content-encoding \"\(encoding)\" is not supported: forward the body as Voucherify sent it")
        case .cacheUnavailable(let detail):
            return ConnectError(.unavailable, "the cache could not be invalidated, retry later: \(detail)")
        }
    }

    /// Bounded label for metrics.
    public var metricLabel: String {
        switch self {
        case .notConfigured: return "not_configured"
        case .missingSignature, .badSignature: return "unauthenticated"
        case .malformed: return "malformed"
        case .tooLarge: return "too_large"
        case .unsupportedEncoding: return "unsupported_encoding"
        case .cacheUnavailable: return "cache_unavailable"
        }
    }
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

public enum Hex {
    public static func lowercase(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        for byte in bytes {
            out.append(lowerHexDigits[Int(byte >> 4)])
            out.append(lowerHexDigits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex digits of either case; nil for an odd length or any other character.
    public static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = hexDigitValue(digits[index]), let low = hexDigitValue(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
