import Codecs

/// `GET /v1/loyalties/{campaignId}/members/{memberId}/points-expiration?limit=&page=`.
struct PointsExpirationAPI {
    let state: FakeState

    static let envoyBody = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"

    func handle(_ request: IncomingRequest, campaign: String, member: String) -> Dispatch {
        let pageParam = request.queryValue("page")
        state.stats.record(campaign: campaign, member: member, page: pageParam.flatMap { Int($0) }.map(String.init) ?? pageParam ?? "1")
        let withinLimit = state.rateLimit.record()
        var latency = state.defaultLatencyMs

        let response: OutgoingResponse
        switch state.failures.next() {
        case .drop:
            return Dispatch(action: .drop, delayMs: latency)
        case .status(let status, let body, let contentType):
            response = injectedStatus(status, body: body, contentType: contentType)
        case .rateLimit(let retryAfter):
            response = tooManyRequests(retryAfter: retryAfter)
        case .malformed:
            response = OutgoingResponse(status: 200, headers: [("Content-Type", "application/json")] + state.rateLimit.headers(),
                                        body: Array(#"{"object":"list","data":[{"id":"#.utf8))
        case .slow(let ms):
            latency = ms
            response = answer(request, campaign: campaign, member: member, withinLimit: withinLimit)
        case .none:
            response = answer(request, campaign: campaign, member: member, withinLimit: withinLimit)
        }
        return Dispatch(action: .respond(response), delayMs: latency)
    }

    /// The real behaviour: rate limit (when enforced), auth, query checks, lookups, one page.
    private func answer(_ request: IncomingRequest, campaign: String, member: String, withinLimit: Bool) -> OutgoingResponse {
        if state.rateLimit.enforce && !withinLimit {
            return tooManyRequests(retryAfter: state.rateLimit.secondsToReset())
        }
        let headers = state.rateLimit.headers()
        func error(_ e: (Int32, JSONValue)) -> OutgoingResponse { .json(e.0, e.1, headers: headers) }

        let appId = request.header("X-App-Id")
        let appToken = request.header("X-App-Token")
        guard let appId, let appToken else {
            return error(VoucherifyErrorBody.unauthorized("Missing X-App-Id or X-App-Token header"))
        }
        guard appId == state.appId, appToken == state.appToken else {
            return error(VoucherifyErrorBody.unauthorized("Invalid application credentials"))
        }

        guard let limit = boundedInt(request.queryValue("limit"), default: 10, range: 1...100) else {
            return error(VoucherifyErrorBody.invalidQuery("Query param limit must be an integer between 1 and 100"))
        }
        guard let page = boundedInt(request.queryValue("page"), default: 1, range: 1...100) else {
            return error(VoucherifyErrorBody.invalidQuery("Query param page must be an integer between 1 and 100"))
        }

        guard let found = state.store.campaign(matching: campaign) else {
            return error(VoucherifyErrorBody.notFound(resourceType: "campaign", id: campaign))
        }
        guard let card = found.members[member] else {
            return error(VoucherifyErrorBody.notFound(resourceType: "voucher", id: member))
        }

        let start = (page - 1) * limit
        let slice = start < card.buckets.count ? card.buckets[start..<min(start + limit, card.buckets.count)] : []
        let body: JSONValue = .object([
            "object": .string("list"),
            "data_ref": .string("data"),
            "data": .array(slice.map { $0.json(voucherId: card.voucherId, campaignId: found.id) }),
            "total": .integer(card.buckets.count),
        ])
        return .json(200, body, headers: headers)
    }

    private func injectedStatus(_ status: Int32, body: String?, contentType: String?) -> OutgoingResponse {
        let headers = state.rateLimit.headers()
        if let body {
            return OutgoingResponse(status: status, headers: [("Content-Type", contentType ?? "application/json")] + headers,
                                    body: Array(body.utf8))
        }
        if status >= 500 {
            // What a proxy in front of Voucherify says: not JSON at all.
            return OutgoingResponse(status: status, headers: [("Content-Type", contentType ?? "text/plain")] + headers,
                                    body: Array(PointsExpirationAPI.envoyBody.utf8))
        }
        return .json(status, VoucherifyErrorBody.generic(status: status), headers: headers)
    }

    private func tooManyRequests(retryAfter: Int) -> OutgoingResponse {
        let now = RateLimitWindow.nowSeconds()
        let headers = state.rateLimit.headers(now: now).map { name, value -> (String, String) in
            switch name {
            case "X-Rate-Limit-Remaining": return (name, "0")
            case "X-Rate-Limit-Retry": return (name, String(now + Int64(retryAfter)))
            default: return (name, value)
            }
        } + [("Retry-After", String(retryAfter))]
        let e = VoucherifyErrorBody.tooManyRequests(retryAfter: retryAfter)
        return .json(e.0, e.1, headers: headers)
    }

    /// nil when present but not a plain integer in `range`; `default` when absent.
    private func boundedInt(_ text: String?, default value: Int, range: ClosedRange<Int>) -> Int? {
        guard let text else { return value }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(text), range.contains(n) else { return nil }
        return n
    }
}
