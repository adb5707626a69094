/// Every way a Voucherify call can fail, as the API client reports it. The application maps
/// these to its callers' error codes; nothing here knows about RPC.
public enum VoucherifyError: Error, Equatable, Sendable {
    /// 404 naming the campaign.
    case campaignNotFound
    /// 404 for anything else: the loyalty card is not in the campaign.
    case memberNotFound
    /// 5xx, a timeout, a network error, or the client could not start the call.
    case unavailable(String)
    /// 429, or calls paused after one; seconds until Voucherify accepts calls again.
    case rateLimited(retryAfterSeconds: Int?)
    /// 401/403: the configured credentials are wrong.
    case rejectedCredentials(status: Int)
    /// Any other status, with our own words for it (`VoucherifyFailure.refusalText`). Voucherify's
    /// text goes to the log only: it may echo what we sent, and callers have no use for it.
    case rejectedRequest(status: Int, detail: String)
    /// A 200 whose body is not the documented shape.
    case malformed(String)
}

extension VoucherifyError {
    /// Voucherify could not be asked or did not answer usefully right now (5xx, timeout, network,
    /// 429 or the budget spent, circuit open, an unreadable answer): the cases in which a stale
    /// answer beats an error. Not-found and rejected credentials are answers, not outages.
    public var isOutage: Bool {
        switch self {
        case .unavailable, .rateLimited, .malformed: return true
        case .campaignNotFound, .memberNotFound, .rejectedCredentials, .rejectedRequest: return false
        }
    }
}
