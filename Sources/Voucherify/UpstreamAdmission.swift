/// Decides whether one more call may go to Voucherify now: the shared rate budget, in the
/// application. `VoucherifyAPI` asks before every HTTP request it sends (each page, each retry)
/// and reports what Voucherify said about its limit on every answer. Loop-confined: called on
/// the loop that runs the read, answered on that loop.
public protocol UpstreamAdmission: AnyObject {
    /// Grants one call, or says why not: `.rateLimited(retryAfterSeconds:)` when the budget is
    /// spent past the caller's deadline or Voucherify said stop. Answers exactly once, on the
    /// loop, possibly from inside this call; may wait (bounded by `deadline`, monotonic ms).
    func admit(deadline: Int64, completion: @escaping (Result<Void, VoucherifyError>) -> Void)

    /// Voucherify's rate-limit headers on one answer (any status, 429 included).
    func observe(_ observation: RateLimitObservation)
}

/// What one Voucherify answer said about the project's rate limit. Every field is optional:
/// a header may be absent or unreadable. Values are clamped when parsed, never trusted raw.
public struct RateLimitObservation: Equatable, Sendable {
    /// `X-Rate-Limit-Limit`: calls allowed per window.
    public var limit: Int?
    /// `X-Rate-Limit-Remaining`: calls left in the current window.
    public var remaining: Int?
    /// On a 429: seconds until calls are allowed again (`X-Rate-Limit-Retry` / `Retry-After`,
    /// the later, clamped to `RateLimitHeaders.maxRetryAfterSeconds`; 1 when neither is readable).
    public var blockedForSeconds: Int?

    public init(limit: Int? = nil, remaining: Int? = nil, blockedForSeconds: Int? = nil) {
        self.limit = limit
        self.remaining = remaining
        self.blockedForSeconds = blockedForSeconds
    }
}

/// Admits every call: for tools and tests that have no budget to keep.
public final class UnlimitedAdmission: UpstreamAdmission {
    public init() {}
    public func admit(deadline: Int64, completion: @escaping (Result<Void, VoucherifyError>) -> Void) { completion(.success(())) }
    public func observe(_ observation: RateLimitObservation) {}
}
