import RPC
import Voucherify

extension VoucherifyError {
    /// The one mapping from an upstream failure to what callers see. Messages name the missing
    /// thing or the setting to fix and never a secret nor Voucherify's own text (an unexpected
    /// refusal's detail is our words for its status).
    func rpcError(campaign: String, member: String) -> RPCError {
        switch self {
        case .campaignNotFound:
            return RPCError(.notFound, "loyalty campaign \"\(campaign)\" was not found in Voucherify")
        case .memberNotFound:
            return RPCError(.notFound, "loyalty card \"\(member)\" was not found in campaign \"\(campaign)\"")
        case .unavailable(let detail):
            return RPCError(.unavailable, "Voucherify is unavailable: \(detail)")
        case .rateLimited(let seconds):
            let retryAfter = max(1, seconds ?? 1)
            return RPCError(.resourceExhausted, "Voucherify rate limit reached; retry in \(retryAfter) s", retryAfterSeconds: retryAfter)
        case .rejectedCredentials(let status):
            return RPCError(.internal,
                "Voucherify rejected the service's credentials (HTTP \(status)); check VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN")
        case .rejectedRequest(let status, let detail):
            return RPCError(.internal, "Voucherify rejected the request (HTTP \(status)): \(detail)")
        case .malformed(let reason):
            return RPCError(.unavailable, "Voucherify sent an unreadable answer: \(reason)")
        }
    }
}

extension RPCError {
    /// Redis was needed for the answer (an invalidation) and could not give it.
    static func cacheUnavailable(_ detail: String) -> RPCError {
        RPCError(.unavailable, "the cache is unavailable, retry later: \(detail)")
    }
}
