import RPC

/// Why a webhook delivery was not acknowledged, with the HTTP status the relay sees. 4xx means
/// "this delivery will never succeed", 503 means "retry later".
enum WebhookRejection: Error, Equatable, Sendable {
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

    var httpStatus: Int {
        switch self {
        case .notConfigured, .cacheUnavailable: return 503
        case .missingSignature, .badSignature: return 401
        case .malformed: return 400
        case .tooLarge: return 413
        case .unsupportedEncoding: return 415
        }
    }

    /// The body's error, in the same `{"code","message"}` shape as every other error we send.
    var error: RPCError {
        switch self {
        case .notConfigured:
            return RPCError(.unavailable, "the webhook endpoint is not configured: set WEBHOOK_SECRET to Voucherify's webhook secret")
        case .missingSignature:
            return RPCError(.unauthenticated, "the x-voucherify-signature header is missing")
        case .badSignature:
            return RPCError(.unauthenticated, "x-voucherify-signature does not match the payload (check WEBHOOK_SECRET and that the relay forwards the body unchanged)")
        case .malformed(let detail):
            return RPCError(.invalidArgument, detail)
        case .tooLarge(let limit):
            return RPCError(.resourceExhausted, "the webhook body exceeds \(limit) bytes")
        case .unsupportedEncoding(let encoding):
            return RPCError(.unimplemented, "content-encoding \"\(encoding)\" is not supported: forward the body as Voucherify sent it")
        case .cacheUnavailable(let detail):
            return RPCError(.unavailable, "the cache could not be invalidated, retry later: \(detail)")
        }
    }

    /// Bounded label for metrics.
    var metricLabel: String {
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

