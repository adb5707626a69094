import Codecs

/// A request as the handlers see it: already copied out of libevent.
struct IncomingRequest {
    enum Method: String {
        case get = "GET", post = "POST", put = "PUT", delete = "DELETE", head = "HEAD"
        case options = "OPTIONS", patch = "PATCH", trace = "TRACE", connect = "CONNECT", other = "OTHER"
    }

    let method: Method
    /// Raw path (still percent-encoded), without the query.
    let rawPath: String
    /// Decoded query parameters in order (`+` means a space).
    let query: [(String, String)]
    /// Header lookup (case-insensitive), backed by libevent while the request is alive.
    let header: (String) -> String?
    let body: [UInt8]

    func queryValue(_ name: String) -> String? {
        query.first { $0.0 == name }?.1
    }

    /// Raw path split on `/` and percent-decoded segment by segment (so `%2F` stays inside a segment).
    /// nil when a segment is not valid percent-encoding or not UTF-8.
    var pathSegments: [String]? {
        var segments: [String] = []
        for raw in rawPath.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            guard let decoded = utf8Text(PercentEncoding.decodePathSegment(raw)) else { return nil }
            segments.append(decoded)
        }
        return segments
    }

    /// `a=1&b=x%20y` → [("a","1"),("b","x y")]. nil when an escape is malformed or a part is not UTF-8.
    static func parseQuery(_ query: Substring) -> [(String, String)]? {
        var result: [(String, String)] = []
        for pair in query.split(separator: "&") {
            let keyAndValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let rawValue = keyAndValue.count > 1 ? keyAndValue[1] : ""
            guard let key = utf8Text(PercentEncoding.decodeQueryComponent(keyAndValue[0].utf8)),
                  let value = utf8Text(PercentEncoding.decodeQueryComponent(rawValue.utf8)) else { return nil }
            result.append((key, value))
        }
        return result
    }
}

/// Decoded bytes as text; nil when there are none (a bad escape) or they are not valid UTF-8.
private func utf8Text(_ bytes: [UInt8]?) -> String? {
    bytes.flatMap { String(validating: $0, as: UTF8.self) }
}

/// What to send back.
struct OutgoingResponse {
    var status: Int32
    var headers: [(String, String)]
    var body: [UInt8]

    static func json(_ status: Int32, _ value: JSONValue, headers: [(String, String)] = []) -> OutgoingResponse {
        var writer = JSONWriter()
        writer.appendValue(value)
        return OutgoingResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: writer.bytes)
    }
}

/// An answer whose body is made piece by piece while the client takes it, so a large body never
/// sits in memory whole. Sent with chunked transfer-encoding (to HTTP/1.1 clients).
struct StreamedResponse {
    var status: Int32
    var headers: [(String, String)]
    /// The next piece of the body, called on the loop once the previous piece is written out;
    /// nil (or an empty piece) when the body is complete.
    let nextPiece: () -> [UInt8]?
}

/// A handler's decision: answer (maybe after a delay), close the connection without a word, or
/// answer later, once work started on the loop has finished.
struct Dispatch {
    enum Action {
        case respond(OutgoingResponse)
        case stream(StreamedResponse)
        case drop
        /// `start` runs on the loop (after the delay, if any) and calls `reply` once, on the loop,
        /// whenever the answer is ready; the answer is dropped if the client has gone away meanwhile.
        case deferred(start: (_ reply: @escaping (OutgoingResponse) -> Void) -> Void)
    }

    var action: Action
    var delayMs: Int
    /// Runs once, on the loop, when the exchange is over: answered, dropped, abandoned because
    /// its connection closed, or cut short by the server's teardown. What keeps count of calls in
    /// progress learns here that one ended.
    var onFinish: (() -> Void)? = nil

    static func now(_ response: OutgoingResponse) -> Dispatch { Dispatch(action: .respond(response), delayMs: 0) }

    var isDrop: Bool {
        if case .drop = action { return true }
        return false
    }
}

/// Reason phrases for the status line.
func reasonPhrase(_ status: Int32) -> String {
    switch status {
    case 200: return "OK"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 413: return "Payload Too Large"
    case 429: return "Too Many Requests"
    case 500: return "Internal Server Error"
    case 502: return "Bad Gateway"
    case 503: return "Service Unavailable"
    case 504: return "Gateway Timeout"
    default: return "Status \(status)"
    }
}
