import Codecs
import ExpiryDomain

/// One page of `GET /v1/loyalties/{campaign}/members/{member}/points-expiration`.
public struct PointsExpirationPage: Equatable, Sendable {
    /// Buckets over all pages.
    public var total: Int
    public var buckets: [PointsBucket]

    public init(total: Int, buckets: [PointsBucket]) {
        self.total = total
        self.buckets = buckets
    }

    /// Reads the `{"object":"list","data":[…],"total":N}` envelope. Anything unexpected is
    /// `malformed` with a short reason; unknown fields are ignored.
    public init(json: [UInt8]) throws(VoucherifyError) {
        let document: JSONValue
        do {
            document = try JSONParser.parseDocument(json, maxDepth: 64)
        } catch {
            throw .malformed("points-expiration body is not JSON (\(error))")
        }
        guard case .object(let envelope) = document else {
            throw .malformed("points-expiration body is not an object")
        }
        guard case .array(let data)? = envelope["data"] else {
            throw .malformed("points-expiration body has no data array")
        }
        guard let total = envelope["total"]?.int64Value.flatMap({ Int(exactly: $0) }), total >= 0 else {
            throw .malformed("points-expiration body has no valid total")
        }
        self.total = total
        buckets = []
        buckets.reserveCapacity(data.count)
        for (index, element) in data.enumerated() {
            buckets.append(try Self.bucket(element, index: index))
        }
    }

    /// Pages needed for `total` buckets at `pageSize` per page, capped at `maxPages`; never traps,
    /// whatever `total` Voucherify claims.
    public static func pageCount(total: Int, pageSize: Int, maxPages: Int) -> Int {
        guard total > 0 else { return 1 }
        let pages = total / pageSize + (total % pageSize == 0 ? 0 : 1)
        return min(maxPages, pages)
    }

    private static func bucket(_ value: JSONValue, index: Int) throws(VoucherifyError) -> PointsBucket {
        func malformed(_ what: String) -> VoucherifyError {
            .malformed("bucket \(index): \(what)")
        }
        guard case .object(let object) = value else { throw malformed("not an object") }
        guard case .string(let id)? = object["id"], !id.isEmpty else { throw malformed("missing id") }
        guard case .string(let status)? = object["status"] else { throw malformed("missing status") }
        guard let points = object["bucket"]?.objectValue?["total_points"]?.int64Value else {
            throw malformed("missing or non-integer bucket.total_points")
        }
        func optionalString(_ key: String) throws(VoucherifyError) -> String? {
            switch object[key] {
            case nil, .null?: return nil
            case .string(let s)?: return s
            default: throw malformed("\(key) is not a string")
            }
        }
        var expiresAt: CalendarDate?
        if let text = try optionalString("expires_at"), !text.isEmpty {
            guard let date = CalendarDate(iso: text) else { throw malformed("expires_at is not a YYYY-MM-DD date") }
            expiresAt = date
        }
        func timestamp(_ key: String) throws(VoucherifyError) -> Timestamp? {
            guard let text = try optionalString(key) else { return nil }
            guard let timestamp = Timestamp(rfc3339: text) else { throw malformed("\(key) is not an RFC 3339 timestamp") }
            return timestamp
        }
        return PointsBucket(
            id: id,
            voucherId: try optionalString("voucher_id") ?? "",
            campaignId: try optionalString("campaign_id") ?? "",
            points: points,
            status: status,
            expiresAt: expiresAt,
            createdAt: try timestamp("created_at"),
            updatedAt: try timestamp("updated_at"))
    }
}

/// Turns a failed Voucherify answer into a `VoucherifyError`.
public enum VoucherifyFailure {
    /// Longest piece of Voucherify's own error text that goes into a log line.
    public static let maxLoggedMessageCharacters = 200

    public static func classify(status: Int, body: [UInt8], retryAfterSeconds: Int?) -> VoucherifyError {
        switch status {
        case 404:
            // Voucherify names the missing resource; anything but the campaign means the card.
            if errorObject(body)?["resource_type"]?.stringValue == "campaign" {
                return .campaignNotFound
            }
            return .memberNotFound
        case 401, 403:
            return .rejectedCredentials(status: status)
        case 429:
            return .rateLimited(retryAfterSeconds: retryAfterSeconds)
        case 500...599:
            return .unavailable("HTTP \(status)")
        default:
            // Our own words: Voucherify's text may echo what we sent, and callers have no use for it.
            return .rejectedRequest(status: status, detail: refusalText(status: status))
        }
    }

    /// What we say about a refusal we did not expect, per status.
    static func refusalText(status: Int) -> String {
        switch status {
        case 400: return "the request was malformed"
        case 402: return "the Voucherify plan does not allow it"
        case 405: return "the method is not allowed"
        case 409: return "a conflict"
        case 413, 414: return "the request was too large"
        case 422: return "the request could not be processed"
        case 400...499: return "the request was refused"
        default: return "an unexpected status"
        }
    }

    /// Voucherify's own explanation of a refusal, for the log: `message`, then `details` in
    /// parentheses, truncated; nil when the body has neither (5xx bodies are often not JSON).
    public static func upstreamMessage(_ body: [UInt8]) -> String? {
        let error = errorObject(body)
        let parts = [error?["message"]?.stringValue, error?["details"]?.stringValue]
            .compactMap { $0 }
            .filter { !$0.isEmpty }
        guard let first = parts.first else { return nil }
        let text = parts.count > 1 && parts[1] != first ? "\(first) (\(parts[1]))" : first
        return text.count > maxLoggedMessageCharacters ? String(text.prefix(maxLoggedMessageCharacters)) + "…" : text
    }

    /// The error body as an object, or nil when it is not JSON.
    private static func errorObject(_ body: [UInt8]) -> JSONObject? {
        (try? JSONParser.parseDocument(body, maxDepth: 16))?.objectValue
    }
}

/// Voucherify's rate-limit headers.
public enum RateLimitHeaders {
    /// The longest pause an upstream header can impose (a header from a broken or hostile peer
    /// must not stop the service for days).
    public static let maxRetryAfterSeconds = 300

    /// Seconds until calls are allowed again: `X-Rate-Limit-Retry` (Unix epoch seconds) and
    /// `Retry-After` (delay seconds), names case-insensitive; the later of the two wins, clamped
    /// to 0…`maxRetryAfterSeconds`; nil when neither is present and readable. Saturating: no
    /// value a peer sends can trap.
    public static func retryAfterSeconds(headers: [(name: String, value: String)], now: Timestamp) -> Int? {
        var result: Int64?
        for header in headers {
            let seconds: Int64
            if header.name.utf8.elementsEqualIgnoringASCIICase("x-rate-limit-retry".utf8) {
                guard let epoch = headerInteger(header.value) else { continue }
                let (epochMilliseconds, overflow) = epoch.multipliedReportingOverflow(by: 1000)
                let delta = overflow ? Int64.max : epochMilliseconds.subtractingSaturating(now.millisecondsSince1970)
                // Round up: retrying within the announced second would be too early.
                seconds = delta <= 0 ? 0 : delta / 1000 + (delta % 1000 == 0 ? 0 : 1)
            } else if header.name.utf8.elementsEqualIgnoringASCIICase("retry-after".utf8) {
                guard let delay = headerInteger(header.value) else { continue }
                seconds = delay
            } else {
                continue
            }
            result = max(result ?? 0, seconds)
        }
        return result.map { Int(min(max(0, $0), Int64(maxRetryAfterSeconds))) }
    }

    /// A non-negative decimal header value, surrounding spaces ignored; an HTTP-date or anything
    /// else is nil. Values beyond Int64 saturate rather than being dropped.
    static func headerInteger(_ value: String) -> Int64? {
        let digits = trimmingOWS(value[...]).utf8
        guard !digits.isEmpty, digits.allSatisfy(isDigit) else { return nil }
        return parseDecimalInt64(digits) ?? Int64.max
    }
}

extension Sequence<UInt8> {
    func elementsEqualIgnoringASCIICase(_ lowercase: some Sequence<UInt8>) -> Bool {
        elementsEqual(lowercase) { byte, expected in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 == expected : byte == expected
        }
    }
}
