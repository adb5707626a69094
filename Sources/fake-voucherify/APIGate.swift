import Codecs

/// What every Voucherify API call passes, whichever endpoint it is for: the rate-limit window
/// (counted in the stats) and the app credentials.
struct APIGate {
    let state: FakeState

    /// Counts a call arriving at `nowMs` in the rate-limit window; the 429 to send when the
    /// enforced limit refuses it.
    func admit(nowMs: Int64) -> OutgoingResponse? {
        let admission = state.rateLimit.admit(nowMs: nowMs)
        state.stats.sawWindow(callsInWindow: admission.callsInWindow)
        guard !admission.allowed else { return nil }
        state.stats.countRateLimited()
        return tooManyRequests(retryAfter: state.rateLimit.secondsToWindowEnd(nowMs: nowMs),
                               retryAt: state.rateLimit.windowEndSeconds(nowMs: nowMs))
    }

    /// The 401 for missing or wrong `X-App-Id` / `X-App-Token`; nil when they are right.
    func credentialsProblem(appId: String?, appToken: String?) -> (Int32, JSONValue)? {
        guard let appId, let appToken else {
            return VoucherifyErrorBody.unauthorized("Missing X-App-Id or X-App-Token header")
        }
        guard appId == state.appId, appToken == state.appToken else {
            return VoucherifyErrorBody.unauthorized("Invalid application credentials")
        }
        return nil
    }

    /// A 429 that says come back after `retryAfter` seconds, i.e. at epoch second `retryAt`.
    func tooManyRequests(retryAfter: Int, retryAt: Int64) -> OutgoingResponse {
        let headers = state.rateLimit.headers(remaining: 0, retryAt: retryAt) + [("Retry-After", String(retryAfter))]
        let e = VoucherifyErrorBody.tooManyRequests(retryAfter: retryAfter)
        return .json(e.0, e.1, headers: headers)
    }
}
