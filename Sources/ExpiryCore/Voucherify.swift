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
    /// `upstreamMalformed` with a short reason; unknown fields are ignored.
    public init(json: [UInt8]) throws(ExpiryError) {
        let document: JSONValue
        do {
            document = try JSONParser.parseDocument(json, maxDepth: 64)
        } catch {
            throw .upstreamMalformed("points-expiration body is not JSON (\(error))")
        }
        guard case .object(let envelope) = document else {
            throw .upstreamMalformed("points-expiration body is not an object")
        }
        guard case .array(let data)? = envelope["data"] else {
            throw .upstreamMalformed("points-expiration body has no data array")
        }
        guard let total = envelope["total"]?.int64Value.flatMap({ Int(exactly: $0) }), total >= 0 else {
            throw .upstreamMalformed("points-expiration body has no valid total")
        }
        self.total = total
        buckets = []
        buckets.reserveCapacity(data.count)
        for (index, element) in data.enumerated() {
            buckets.append(try Self.bucket(element, index: index))
        }
    }

    private static func bucket(_ value: JSONValue, index: Int) throws(ExpiryError) -> PointsBucket {
        func malformed(_ what: String) -> ExpiryError {
            .upstreamMalformed("bucket \(index): \(what)")
        }
        guard case .object(let object) = value else { throw malformed("not an object") }
        guard case .string(let id)? = object["id"], !id.isEmpty else { throw malformed("missing id") }
        guard case .string(let status)? = object["status"] else { throw malformed("missing status") }
        guard let points = object["bucket"]?.objectValue?["total_points"]?.int64Value else {
            throw malformed("missing or non-integer bucket.total_points")
        }
        func optionalString(_ key: String) throws(ExpiryError) -> String? {
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
        func timestamp(_ key: String) throws(ExpiryError) -> Timestamp? {
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

/// Turns a failed Voucherify answer into a domain error.
public enum VoucherifyFailure {
    /// Longest upstream detail quoted in an error message.
    static let maxDetailCharacters = 200

    public static func classify(status: Int, body: [UInt8], campaign: String, member: String, retryAfterSeconds: Int?) -> ExpiryError {
        switch status {
        case 404:
            // Voucherify names the missing resource; anything but the campaign means the card.
            if errorObject(body)?["resource_type"]?.stringValue == "campaign" {
                return .campaignNotFound(campaign: campaign)
            }
            return .memberNotFound(campaign: campaign, member: member)
        case 401, 403:
            return .upstreamRejectedCredentials(status: status)
        case 429:
            return .upstreamRateLimited(retryAfterSeconds: retryAfterSeconds)
        case 500...599:
            return .upstreamUnavailable("HTTP \(status)")
        default:
            return .upstreamRejectedRequest(status: status, detail: detail(errorObject(body)) ?? "HTTP \(status)")
        }
    }

    /// The error body as an object, or nil when it is not JSON (5xx bodies often are not).
    private static func errorObject(_ body: [UInt8]) -> JSONObject? {
        (try? JSONParser.parseDocument(body, maxDepth: 16))?.objectValue
    }

    /// `message`, then `details` in parentheses when both are present; trimmed to a sane length.
    private static func detail(_ error: JSONObject?) -> String? {
        let parts = [error?["message"]?.stringValue, error?["details"]?.stringValue]
            .compactMap { $0 }
            .filter { !$0.isEmpty }
        guard let first = parts.first else { return nil }
        let text = parts.count > 1 && parts[1] != first ? "\(first) (\(parts[1]))" : first
        return text.count > maxDetailCharacters ? String(text.prefix(maxDetailCharacters)) + "…" : text
    }
}

/// Voucherify's rate-limit headers.
public enum RateLimitHeaders {
    /// Seconds until calls are allowed again: `X-Rate-Limit-Retry` (Unix epoch seconds) and
    /// `Retry-After` (delay seconds), names case-insensitive; the later of the two wins, never
    /// negative; nil when neither is present and readable.
    public static func retryAfterSeconds(headers: [(name: String, value: String)], now: Timestamp) -> Int? {
        var result: Int?
        for header in headers {
            let seconds: Int64
            if header.name.utf8.elementsEqualIgnoringASCIICase("x-rate-limit-retry".utf8) {
                guard let epoch = headerInteger(header.value) else { continue }
                // Round up: retrying within the announced second would be too early.
                let delta = epoch * 1000 - now.millisecondsSince1970
                seconds = delta <= 0 ? 0 : (delta + 999) / 1000
            } else if header.name.utf8.elementsEqualIgnoringASCIICase("retry-after".utf8) {
                guard let delay = headerInteger(header.value) else { continue }
                seconds = delay
            } else {
                continue
            }
            let clamped = Int(clamping: max(0, seconds))
            result = max(result ?? 0, clamped)
        }
        return result
    }

    /// A non-negative decimal header value, surrounding spaces ignored; an HTTP-date or anything
    /// else is nil. Values too large for a day count are capped rather than dropped.
    private static func headerInteger(_ value: String) -> Int64? {
        let digits = trimmingOWS(value[...]).utf8
        guard !digits.isEmpty, digits.allSatisfy(isDigit) else { return nil }
        return parseDecimalInt64(digits) ?? Int64.max / 1000
    }
}

extension Sequence<UInt8> {
    func elementsEqualIgnoringASCIICase(_ lowercase: some Sequence<UInt8>) -> Bool {
        elementsEqual(lowercase) { byte, expected in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 == expected : byte == expected
        }
    }
}
