import Codecs

/// Voucherify URL paths, built from percent-encoded segments only: no member or campaign code can
/// change which resource a call addresses (with `/`, `%`, `?`, `#`, or as a dot segment).
enum UpstreamPath {
    /// `/v1/loyalties/{campaign}/members/{member}/points-expiration`.
    static func pointsExpiration(campaign: String, member: String) -> String {
        "/v1/loyalties/\(segment(campaign))/members/\(segment(member))/points-expiration"
    }

    /// One segment: every byte outside RFC 3986's unreserved set is `%XX`, and so are the dots of
    /// `.` and `..`, which any URL resolver would otherwise collapse with their neighbours
    /// (RFC 3986 §5.2.4). The HTTP client sends paths as given (no normalising of its own).
    static func segment(_ text: String) -> String {
        text == "." || text == ".." ? String(repeating: "%2E", count: text.utf8.count) : PercentEncoding.pathSegment(text)
    }
}
