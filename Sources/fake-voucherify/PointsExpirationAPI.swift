import Codecs
import ExpiryDomain

/// `GET /v1/loyalties/{campaignId}/members/{memberId}/points-expiration?limit=&page=`.
struct PointsExpirationAPI {
    let state: FakeState
    let gate: APIGate

    init(state: FakeState) {
        self.state = state
        gate = APIGate(state: state)
    }

    static let envoyBody = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"

    /// In order: the call counts (stats, rate window), an enforced limit refuses it before
    /// anything else, an injected failure takes its place, a hold rule keeps it open, else the
    /// real answer.
    func handle(_ request: IncomingRequest, campaign: String, member: String) -> Dispatch {
        let call = APICall(request, campaign: campaign, member: member)
        state.stats.arrived(campaign: campaign, member: member, page: call.page.flatMap { Int($0) }.map(String.init) ?? call.page ?? "1")
        let finished = { [stats = state.stats] in stats.finished(campaign: campaign, member: member) }
        func dispatch(_ action: Dispatch.Action, afterMs delay: Int = state.defaultLatencyMs) -> Dispatch {
            Dispatch(action: action, delayMs: delay, onFinish: finished)
        }
        func injected(_ action: Dispatch.Action, afterMs delay: Int = state.defaultLatencyMs) -> Dispatch {
            state.stats.countFailed()
            return dispatch(action, afterMs: delay)
        }

        let nowMs = Timestamp.now().millisecondsSince1970
        if let refused = gate.admit(nowMs: nowMs) { return dispatch(.respond(refused)) }

        switch state.failures.next() {
        case .drop:
            return injected(.drop)
        case .status(let status, let body, let contentType):
            return injected(.respond(injectedStatus(status, body: body, contentType: contentType, nowMs: nowMs)))
        case .rateLimit(let retryAfter):
            return injected(.respond(gate.tooManyRequests(retryAfter: retryAfter, retryAt: nowMs / 1000 + Int64(retryAfter))))
        case .malformed:
            return injected(.respond(OutgoingResponse(status: 200, headers: [("Content-Type", "application/json")] + state.rateLimit.headers(nowMs: nowMs),
                                                      body: Array(#"{"object":"list","data":[{"id":"#.utf8))))
        case .slow(let ms):
            return injected(.respond(answer(call)), afterMs: ms)
        case .none:
            break
        }

        let subject = ReadHolds.CallSubject(member: member, campaignSpellings: spellings(of: campaign))
        guard let holdMs = state.holds.holdMs(for: subject) else { return dispatch(.respond(answer(call))) }
        // Answered on release from the data as it is then, with no added latency.
        let held = ReadHolds.HeldCall(subject: subject)
        return Dispatch(action: .deferred { [holds = state.holds] reply in
            holds.hold(held, for: holdMs) { reply(answer(call)) }
        }, delayMs: 0, onFinish: { [holds = state.holds] in
            holds.forget(held)
            finished()
        })
    }

    /// What an answer needs from a request, copied while libevent still holds it: a held call is
    /// answered long after it arrived.
    private struct APICall {
        let campaign: String
        let member: String
        let appId: String?
        let appToken: String?
        let limit: String?
        let page: String?

        init(_ request: IncomingRequest, campaign: String, member: String) {
            self.campaign = campaign
            self.member = member
            appId = request.header("X-App-Id")
            appToken = request.header("X-App-Token")
            limit = request.queryValue("limit")
            page = request.queryValue("page")
        }
    }

    /// The campaign as called, and the id and name it resolves to.
    private func spellings(of campaign: String) -> [String] {
        guard let found = state.store.campaign(matching: campaign) else { return [campaign] }
        return [campaign, found.id, found.name]
    }

    /// The real behaviour: auth, query checks, lookups, one page; the rate-limit headers as of now.
    private func answer(_ call: APICall) -> OutgoingResponse {
        let headers = state.rateLimit.headers(nowMs: Timestamp.now().millisecondsSince1970)
        func error(_ e: (Int32, JSONValue)) -> OutgoingResponse { .json(e.0, e.1, headers: headers) }

        if let refused = gate.credentialsProblem(appId: call.appId, appToken: call.appToken) { return error(refused) }

        guard let limit = boundedInt(call.limit, default: 10, range: 1...100) else {
            return error(VoucherifyErrorBody.invalidQuery("Query param limit must be an integer between 1 and 100"))
        }
        guard let page = boundedInt(call.page, default: 1, range: 1...100) else {
            return error(VoucherifyErrorBody.invalidQuery("Query param page must be an integer between 1 and 100"))
        }

        guard let found = state.store.campaign(matching: call.campaign) else {
            return error(VoucherifyErrorBody.notFound(resourceType: "campaign", id: call.campaign))
        }
        guard let card = found.members[call.member] else {
            return error(VoucherifyErrorBody.notFound(resourceType: "voucher", id: call.member))
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

    private func injectedStatus(_ status: Int32, body: String?, contentType: String?, nowMs: Int64) -> OutgoingResponse {
        let headers = state.rateLimit.headers(nowMs: nowMs)
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

    /// nil when present but not a plain integer in `range`; `default` when absent.
    private func boundedInt(_ text: String?, default value: Int, range: ClosedRange<Int>) -> Int? {
        guard let text else { return value }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(text), range.contains(n) else { return nil }
        return n
    }
}
