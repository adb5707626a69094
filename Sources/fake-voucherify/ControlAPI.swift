import Codecs
import ExpiryDomain

/// `/_fake/…`: stats, failure injection, member edits, latency, the expiry job and export
/// settings, for tests and people. No auth.
struct ControlAPI {
    let state: FakeState
    let expire: ExpireAPI

    init(state: FakeState) {
        self.state = state
        expire = ExpireAPI(state: state)
    }

    static let routes = """
        GET /_fake/stats, POST /_fake/stats/reset, GET|POST /_fake/fail, PUT|DELETE /_fake/members, GET|POST /_fake/latency, \
        GET|POST /_fake/rate-limit, GET|POST /_fake/hold, POST /_fake/release, POST /_fake/expire, GET|POST /_fake/exports
        """
    private static let paths: Set = ["stats", "stats/reset", "fail", "members", "latency", "rate-limit", "hold", "release", "expire",
                                     "exports"]

    func handle(_ request: IncomingRequest, path: [String]) -> Dispatch {
        if path == ["expire"], request.method == .post {
            return expire.handle(request)  // may answer only after delivering a webhook
        }
        do throws(ControlError) {
            return .now(try answer(request, path: path))
        } catch {
            return .now(error.response)
        }
    }

    private func answer(_ request: IncomingRequest, path: [String]) throws(ControlError) -> OutgoingResponse {
        switch (path, request.method) {
        case (["stats"], .get):
            return .json(200, state.stats.json)
        case (["stats", "reset"], .post):
            state.stats.reset()
            return ControlReply.ok()
        case (["fail"], .get):
            return .json(200, state.failures.json)
        case (["fail"], .post):
            if let problem = state.failures.configure(try ControlReply.decode(FailureInjector.Request.self, request)) {
                throw .badRequest(problem)
            }
            return ControlReply.ok()
        case (["members"], .put):
            return try putMember(ControlReply.decode(PutMember.self, request))
        case (["members"], .delete):
            return try deleteMember(request)
        case (["latency"], .get):
            return .json(200, .object(["latency_ms": .integer(state.defaultLatencyMs)]))
        case (["latency"], .post):
            let r = try ControlReply.decode(LatencyRequest.self, request)
            guard r.latency_ms >= 0 else { throw .badRequest("latency_ms must be ≥ 0") }
            state.defaultLatencyMs = r.latency_ms
            return ControlReply.ok([("latency_ms", .integer(r.latency_ms))])
        case (["rate-limit"], .get):
            return .json(200, state.rateLimit.json(nowMs: Timestamp.now().millisecondsSince1970))
        case (["rate-limit"], .post):
            try state.rateLimit.configure(ControlReply.decode(RateLimitWindow.Request.self, request))
            let settings = state.rateLimit.settings
            return ControlReply.ok([("limit", .integer(settings.limit)), ("window_seconds", .integer(settings.windowSeconds)),
                                    ("enforce", .bool(settings.enforce))])
        case (["hold"], .get):
            return .json(200, state.holds.json)
        case (["hold"], .post):
            try state.holds.add(ControlReply.decode(ReadHolds.HoldRequest.self, request))
            return ControlReply.ok([("rules", .integer(state.holds.rules.count))])
        case (["exports"], .get):
            return .json(200, state.exports.json)
        case (["exports"], .post):
            try state.exports.configure(ControlReply.decode(ExportStore.Request.self, request))
            return ControlReply.ok(state.exports.settingsJSON)
        case (["release"], .post):
            let released = try state.holds.release(ControlReply.decode(ReadHolds.ReleaseRequest.self, request))
            return ControlReply.ok([("released", .integer(released.calls)), ("rules_removed", .integer(released.rules))])
        case _ where ControlAPI.paths.contains(path.joined(separator: "/")):
            throw ControlError(status: 405, message: "method not allowed; routes: \(ControlAPI.routes)")
        default:
            throw .notFound("no such control endpoint; routes: \(ControlAPI.routes)")
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
        /// Buckets the expiry job already deducted (status EXPIRED unless given): only exports show them.
        let expired_buckets: [BucketInput]?
        /// Only used when the campaign does not exist yet and is created.
        let campaign_id: String?
        let campaign_name: String?
    }

    private func putMember(_ r: PutMember) throws(ControlError) -> OutgoingResponse {
        guard !r.campaign.isEmpty, !r.member.isEmpty else { throw .badRequest("campaign and member must not be empty") }
        var builder = BucketBuilder(defaultCreatedAt: Timestamp.now().rfc3339)
        let buckets: [PointsBucket]
        let expired: [PointsBucket]
        do {
            buckets = try builder.build(r.buckets, context: "member \(r.member)")
            expired = try builder.build(r.expired_buckets ?? [], context: "member \(r.member) expired_buckets",
                                        defaultStatus: PointsExpiryJob.expiredStatus)
        } catch {
            throw .badRequest("\(error)")
        }
        if let shared = Set(buckets.map(\.id)).intersection(expired.map(\.id)).sorted().first {
            throw .badRequest("member \(r.member): bucket id \"\(shared)\" is in both buckets and expired_buckets")
        }
        let campaign = state.store.campaignCreatingIfNeeded(r.campaign, id: r.campaign_id, name: r.campaign_name)
        let voucherId = r.voucher_id ?? campaign.members[r.member]?.voucherId ?? "v_put_\(campaign.members.count + 1)"
        let replaced = campaign.members[r.member] != nil
        campaign.members[r.member] = LoyaltyMember(code: r.member, voucherId: voucherId, buckets: buckets, expiredBuckets: expired)
        return ControlReply.ok([("campaign_id", .string(campaign.id)), ("campaign_name", .string(campaign.name)),
                                ("member", .string(r.member)), ("voucher_id", .string(voucherId)),
                                ("buckets", .integer(buckets.count)), ("expired_buckets", .integer(expired.count)),
                                ("replaced", .bool(replaced))])
    }

    private func deleteMember(_ request: IncomingRequest) throws(ControlError) -> OutgoingResponse {
        guard let c = request.queryValue("campaign"), let m = request.queryValue("member") else {
            throw .badRequest("query parameters campaign and member are required")
        }
        guard let campaign = state.store.campaign(matching: c) else { throw .notFound("no campaign \(c)") }
        guard campaign.members.removeValue(forKey: m) != nil else { throw .notFound("no member \(m) in campaign \(campaign.id)") }
        return ControlReply.ok()
    }
}
