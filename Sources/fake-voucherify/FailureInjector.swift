import Codecs

/// `POST /_fake/fail`: makes the next N API calls (or all, until mode "none") fail one way.
final class FailureInjector {
    enum Mode: String, CaseIterable {
        case status, rateLimit = "rate_limit", malformed, slow, drop, none
    }

    struct Plan {
        var mode: Mode
        var status: Int32
        var retryAfter: Int
        var latencyMs: Int
        var body: String?
        var contentType: String?
        /// nil = until cleared.
        var remaining: Int?
    }

    /// What the API handler must do for one call.
    enum Effect {
        case none
        case status(Int32, body: String?, contentType: String?)
        case rateLimit(retryAfter: Int)
        case malformed
        case slow(latencyMs: Int)
        case drop
    }

    private(set) var plan: Plan?

    /// The body `POST /_fake/fail` accepts.
    struct Request: Decodable {
        let mode: String
        let status: Int?
        let count: Int?
        let retry_after: Int?
        let latency_ms: Int?
        let body: String?
        let content_type: String?
    }

    /// Installs (or clears, for mode "none") a plan; returns an error message on bad input.
    func configure(_ r: Request) -> String? {
        guard let mode = Mode(rawValue: r.mode) else {
            return "unknown mode \"\(r.mode)\"; use one of " + Mode.allCases.map(\.rawValue).joined(separator: ", ")
        }
        if mode == .none {
            plan = nil
            return nil
        }
        if let count = r.count, count < 1 { return "count must be at least 1 (omit it for \"until cleared\")" }
        let status = r.status ?? (mode == .rateLimit ? 429 : 500)
        guard (100...599).contains(status) else { return "status must be 100…599" }
        let retryAfter = r.retry_after ?? 60
        guard retryAfter >= 0 else { return "retry_after must be ≥ 0" }
        let latency = r.latency_ms ?? (mode == .slow ? 5000 : 0)
        guard latency >= 0 else { return "latency_ms must be ≥ 0" }
        plan = Plan(mode: mode, status: Int32(status), retryAfter: retryAfter, latencyMs: latency,
                    body: r.body, contentType: r.content_type, remaining: r.count)
        return nil
    }

    /// Consumes one failure for an API call, if a plan is active.
    func next() -> Effect {
        guard var p = plan else { return .none }
        if let remaining = p.remaining {
            p.remaining = remaining - 1
            plan = remaining - 1 > 0 ? p : nil
        }
        switch p.mode {
        case .status: return .status(p.status, body: p.body, contentType: p.contentType)
        case .rateLimit: return .rateLimit(retryAfter: p.retryAfter)
        case .malformed: return .malformed
        case .slow: return .slow(latencyMs: p.latencyMs)
        case .drop: return .drop
        case .none: return .none
        }
    }

    var json: JSONValue {
        guard let p = plan else { return .object(["mode": .string("none")]) }
        var described: JSONObject = ["mode": .string(p.mode.rawValue)]
        switch p.mode {
        case .status: described.members.append(("status", .integer(p.status)))
        case .rateLimit: described.members.append(("retry_after", .integer(p.retryAfter)))
        case .slow: described.members.append(("latency_ms", .integer(p.latencyMs)))
        default: break
        }
        described.members.append(("remaining", p.remaining.map { .integer($0) } ?? .null))
        return .object(described)
    }
}
