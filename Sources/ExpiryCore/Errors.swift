/// Connect protocol error codes with their HTTP status mapping (connectrpc.com/docs/protocol).
public enum ConnectCode: String, Sendable, CaseIterable {
    case canceled
    case unknown
    case invalidArgument = "invalid_argument"
    case deadlineExceeded = "deadline_exceeded"
    case notFound = "not_found"
    case alreadyExists = "already_exists"
    case permissionDenied = "permission_denied"
    case resourceExhausted = "resource_exhausted"
    case failedPrecondition = "failed_precondition"
    case aborted
    case outOfRange = "out_of_range"
    case unimplemented
    case `internal`
    case unavailable
    case dataLoss = "data_loss"
    case unauthenticated

    public var httpStatus: Int {
        switch self {
        case .canceled: return 499
        case .unknown, .internal, .dataLoss: return 500
        case .invalidArgument, .failedPrecondition, .outOfRange: return 400
        case .deadlineExceeded: return 504
        case .notFound: return 404
        case .alreadyExists, .aborted: return 409
        case .permissionDenied: return 403
        case .resourceExhausted: return 429
        case .unimplemented: return 501
        case .unavailable: return 503
        case .unauthenticated: return 401
        }
    }
}

public struct ConnectError: Error, Equatable, Sendable {
    public let code: ConnectCode
    public let message: String

    public init(_ code: ConnectCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `{"code":"...","message":"..."}`
    public func jsonBody() -> [UInt8] {
        var writer = JSONWriter(capacity: 48 + message.utf8.count)
        appendJSON(to: &writer)
        return writer.bytes
    }

    /// The same object written into a larger document (batch results, failure lists).
    public func appendJSON(to writer: inout JSONWriter) {
        writer.appendRaw("{\"code\":")
        writer.appendString(code.rawValue)
        writer.appendRaw(",\"message\":")
        writer.appendString(message)
        writer.appendRaw(byte: UInt8(ascii: "}"))
    }
}

/// Every failure the domain knows about. `connectError` is the single mapping to the wire.
public enum ExpiryError: Error, Equatable, Sendable {
    case invalidRequest(String)
    case campaignNotFound(campaign: String)
    case memberNotFound(campaign: String, member: String)
    case upstreamUnavailable(String)
    case upstreamRateLimited(retryAfterSeconds: Int?)
    case upstreamRejectedCredentials(status: Int)
    case upstreamRejectedRequest(status: Int, detail: String)
    case upstreamMalformed(String)
    case deadlineExceeded(milliseconds: Int)
    case requestTooLarge(limit: Int, what: String)
    /// A protocol feature we do not offer (e.g. an unknown compression) → unimplemented.
    case unsupported(String)
    /// Redis is needed for the answer (an invalidation) and could not give it.
    case cacheUnavailable(String)

    public var connectError: ConnectError {
        switch self {
        case .invalidRequest(let message):
            return ConnectError(.invalidArgument, message)
        case .campaignNotFound(let campaign):
            return ConnectError(.notFound, "loyalty campaign \"\(campaign)\" was not found in Voucherify")
        case .memberNotFound(let campaign, let member):
            return ConnectError(.notFound, "loyalty card \"\(member)\" was not found in campaign \"\(campaign)\"")
        case .upstreamUnavailable(let detail):
            return ConnectError(.unavailable, "Voucherify is unavailable: \(detail)")
        case .upstreamRateLimited(let seconds?):
            return ConnectError(.resourceExhausted, "Voucherify rate limit reached; retry in \(seconds) s")
        case .upstreamRateLimited(nil):
            return ConnectError(.resourceExhausted, "Voucherify rate limit reached; retry later")
        case .upstreamRejectedCredentials(let status):
            // Names the settings to fix; the values themselves never reach a caller or a log.
            return ConnectError(.internal,
                "Voucherify rejected the service's credentials (HTTP \(status)); check VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN")
        case .upstreamRejectedRequest(let status, let detail):
            return ConnectError(.internal, "Voucherify rejected the request (HTTP \(status)): \(detail)")
        case .upstreamMalformed(let reason):
            return ConnectError(.unavailable, "Voucherify sent an unreadable answer: \(reason)")
        case .deadlineExceeded(let milliseconds):
            return ConnectError(.deadlineExceeded, "the call's deadline of \(milliseconds) ms was exceeded")
        case .requestTooLarge(let limit, let what):
            return ConnectError(.resourceExhausted, "\(what) exceeds \(limit) bytes")
        case .unsupported(let message):
            return ConnectError(.unimplemented, message)
        case .cacheUnavailable(let detail):
            return ConnectError(.unavailable, "the cache is unavailable, retry later: \(detail)")
        }
    }
}
