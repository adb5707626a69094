import ExpiryCore
import Foundation

/// `/_fake/…`: stats, failure injection, member edits and latency, for tests and people. No auth.
struct ControlAPI {
    let state: FakeState

    static let routes = """
        GET /_fake/stats, POST /_fake/stats/reset, GET|POST /_fake/fail, PUT|DELETE /_fake/members, GET|POST /_fake/latency
        """

    func handle(_ request: IncomingRequest, path: [String]) -> OutgoingResponse {
        switch (path, request.method) {
        case (["stats"], .get):
            return .json(200, state.stats.json)
        case (["stats", "reset"], .post):
            state.stats.reset()
            return ok()
        case (["fail"], .get):
            return .json(200, state.failures.json)
        case (["fail"], .post):
            return decode(FailureInjector.Request.self, request) { r in
                if let problem = state.failures.configure(r) { return bad(problem) }
                return ok()
            }
        case (["members"], .put):
            return decode(PutMember.self, request, putMember)
        case (["members"], .delete):
            return deleteMember(request)
        case (["latency"], .get):
            return .json(200, .object([("latency_ms", .int(state.defaultLatencyMs))]))
        case (["latency"], .post):
            return decode(LatencyRequest.self, request) { r in
                guard r.latency_ms >= 0 else { return bad("latency_ms must be ≥ 0") }
                state.defaultLatencyMs = r.latency_ms
                return ok([("latency_ms", .int(r.latency_ms))])
            }
        case (["stats"], _), (["stats", "reset"], _), (["fail"], _), (["members"], _), (["latency"], _):
            return .json(405, .object([("ok", .bool(false)), ("error", .string("method not allowed; routes: \(ControlAPI.routes)"))]))
        default:
            return .json(404, .object([("ok", .bool(false)), ("error", .string("no such control endpoint; routes: \(ControlAPI.routes)"))]))
        }
    }

    private struct LatencyRequest: Decodable {
        let latency_ms: Int
    }

    private struct PutMember: Decodable {
        let campaign: String
        let member: String
        let voucher_id: String?
        let buckets: [BucketInput]
        /// Only used when the campaign does not exist yet and is created.
        let campaign_id: String?
        let campaign_name: String?
    }

    private func putMember(_ r: PutMember) -> OutgoingResponse {
        guard !r.campaign.isEmpty, !r.member.isEmpty else { return bad("campaign and member must not be empty") }
        var builder = BucketBuilder(defaultCreatedAt: Timestamp(millisecondsSince1970: RateLimitWindow.nowSeconds() * 1000).rfc3339)
        let buckets: [PointsBucket]
        do {
            buckets = try builder.build(r.buckets, context: "member \(r.member)")
        } catch {
            return bad("\(error)")
        }
        let campaign = state.store.campaignCreatingIfNeeded(r.campaign, id: r.campaign_id, name: r.campaign_name)
        let voucherId = r.voucher_id ?? campaign.members[r.member]?.voucherId ?? "v_put_\(campaign.members.count + 1)"
        let replaced = campaign.members[r.member] != nil
        campaign.members[r.member] = LoyaltyMember(code: r.member, voucherId: voucherId, buckets: buckets)
        return ok([("campaign_id", .string(campaign.id)), ("campaign_name", .string(campaign.name)),
                   ("member", .string(r.member)), ("voucher_id", .string(voucherId)),
                   ("buckets", .int(buckets.count)), ("replaced", .bool(replaced))])
    }

    private func deleteMember(_ request: IncomingRequest) -> OutgoingResponse {
        guard let c = request.queryValue("campaign"), let m = request.queryValue("member") else {
            return bad("query parameters campaign and member are required")
        }
        guard let campaign = state.store.campaign(matching: c) else { return bad404("no campaign \(c)") }
        guard campaign.members.removeValue(forKey: m) != nil else { return bad404("no member \(m) in campaign \(campaign.id)") }
        return ok()
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: IncomingRequest,
                                      _ body: (T) -> OutgoingResponse) -> OutgoingResponse {
        do {
            return body(try JSONDecoder().decode(T.self, from: Data(request.body)))
        } catch {
            return bad("bad JSON body: \(describeDecodingError(error))")
        }
    }

    private func ok(_ extra: [(String, JSONValue)] = []) -> OutgoingResponse {
        .json(200, .object([("ok", .bool(true))] + extra))
    }

    private func bad(_ message: String) -> OutgoingResponse {
        .json(400, .object([("ok", .bool(false)), ("error", .string(message))]))
    }

    private func bad404(_ message: String) -> OutgoingResponse {
        .json(404, .object([("ok", .bool(false)), ("error", .string(message))]))
    }
}
