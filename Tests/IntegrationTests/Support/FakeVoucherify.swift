import Foundation

/// The project's fake Voucherify, started on a free loopback port.
final class FakeVoucherify: @unchecked Sendable {
    static let appID = "test-app-id"
    static let appToken = "test-app-token"
    static let campaignID = "camp_test_loyalty"
    static let campaignName = "Test Loyalty"

    let baseURL: String
    private let child: ChildProcess

    /// `arguments` come after the defaults, so they may override them (`--rate-limit 3` and so on).
    init(arguments: [String] = []) throws {
        child = try ChildProcess(BuiltProducts.path("fake-voucherify"), [
            "--host", "127.0.0.1", "--port", "0", "--members", "3", "--app-id", Self.appID, "--app-token", Self.appToken,
            "--campaign-id", Self.campaignID, "--campaign-name", Self.campaignName,
        ] + arguments)
        let line = try child.waitForLine(containing: "listening on ")
        guard let url = line.split(separator: " ").last else { throw TestFailure("unexpected fake output: \(line)") }
        baseURL = String(url)
    }

    func stop() { child.stop() }

    var isRunning: Bool { child.isRunning }

    /// One points-expiration call, as the service makes it (HTTP/1.1, the test credentials).
    func apiCall(member: String, campaign: String = campaignID, timeoutSeconds: Double = 15) throws -> HTTPResult {
        let path = "/v1/loyalties/\(Self.pathSegment(campaign))/members/\(Self.pathSegment(member))/points-expiration"
        return try CurlClient.request("GET", baseURL + path, headers: ["X-App-Id: \(Self.appID)", "X-App-Token: \(Self.appToken)"],
                                      http2: false, timeoutSeconds: timeoutSeconds)
    }

    /// Creates or replaces a member with exactly these buckets (data-file bucket format).
    func putMember(_ member: String, buckets: [[String: Any]], voucherID: String = "v_test_1") throws {
        let body: [String: Any] = ["campaign": Self.campaignID, "campaign_name": Self.campaignName, "member": member,
                                   "voucher_id": voucherID, "buckets": buckets]
        try control("PUT", "members", body)
    }

    /// Makes the next `count` API calls fail (see the fake's `/_fake/fail`); nil count = until cleared.
    func fail(_ settings: [String: Any]) throws { try control("POST", "fail", settings) }

    func resetStats() throws { try control("POST", "stats/reset", nil) }

    /// From now on, API calls for `member` in `campaign` (nil: any) get no answer until released,
    /// or until `holdMilliseconds` after they arrived (nil: the fake's default, 30 s).
    func hold(member: String? = nil, campaign: String? = nil, holdMilliseconds: Int? = nil) throws {
        var body: [String: Any] = [:]
        body["member"] = member
        body["campaign"] = campaign
        body["hold_ms"] = holdMilliseconds
        try control("POST", "hold", body)
    }

    /// Answers the held calls for `member` (nil: every held call) and lifts the hold rules naming
    /// it (nil: all); returns how many calls it answered.
    @discardableResult
    func release(member: String? = nil) throws -> Int {
        try control("POST", "release", member.map { ["member": $0] } ?? [:])["released"] as? Int ?? -1
    }

    /// API calls held open now.
    func heldCount() throws -> Int {
        try control("GET", "hold", nil)["held"] as? Int ?? -1
    }

    /// Replaces the rate limit and starts a fresh window.
    func setRateLimit(limit: Int, windowSeconds: Int, enforce: Bool) throws {
        try control("POST", "rate-limit", ["limit": limit, "window_seconds": windowSeconds, "enforce": enforce])
    }

    /// `GET /_fake/stats`. Member keys are "campaign|member", page keys "campaign|member|page",
    /// campaign and member as the caller spelled them.
    struct Stats {
        let calls: Int
        let byMember: [String: Int]
        let byPage: [String: Int]
        /// 429s sent because a call was over the enforced rate limit.
        let rateLimited: Int
        /// The most calls that arrived in one rate-limit window, refused ones included.
        let maxInWindow: Int
        /// The most API calls in progress (arrived, not yet answered) at once.
        let maxConcurrent: Int
        let byMemberMaxConcurrent: [String: Int]
        /// Calls that got an injected failure (`fail`).
        let failed: Int
    }

    func stats() throws -> Stats {
        let json = try control("GET", "stats", nil)
        func count(_ key: String) throws -> Int {
            guard let value = json[key] as? Int else { throw TestFailure("fake stats without \(key): \(json)") }
            return value
        }
        func counts(_ key: String) throws -> [String: Int] {
            guard let value = json[key] as? [String: Int] else { throw TestFailure("fake stats without \(key): \(json)") }
            return value
        }
        return Stats(calls: try count("calls"), byMember: try counts("by_member"), byPage: try counts("by_page"),
                     rateLimited: try count("rate_limited"), maxInWindow: try count("max_in_window"),
                     maxConcurrent: try count("max_concurrent"), byMemberMaxConcurrent: try counts("by_member_max_concurrent"),
                     failed: try count("failed"))
    }

    /// `POST /_fake/expire`: drops the member's due buckets and delivers the webhook; returns the fake's report.
    func expire(_ request: [String: Any]) throws -> [String: Any] {
        let result = try CurlClient.request("POST", "\(baseURL)/_fake/expire", body: try JSONSerialization.data(withJSONObject: request),
                                            headers: ["content-type: application/json"], http2: false)
        guard result.status == 200 else { throw TestFailure("fake POST /_fake/expire: \(result.status) \(result.text)") }
        return result.json
    }

    /// API calls received, per "campaign|member|page" key.
    func pageCalls() throws -> [String: Int] { try stats().byPage }

    func totalCalls() throws -> Int { try stats().calls }

    /// Any `/_fake/` endpoint; returns its JSON answer, throws on a non-2xx.
    @discardableResult
    func control(_ method: String, _ path: String, _ body: [String: Any]?) throws -> [String: Any] {
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let result = try CurlClient.request(method, "\(baseURL)/_fake/\(path)", body: data, headers: ["content-type: application/json"], http2: false)
        guard (200..<300).contains(result.status) else { throw TestFailure("fake \(method) /_fake/\(path): \(result.status) \(result.text)") }
        return result.json
    }

    private static func pathSegment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? text
    }
}

/// `count` buckets for the fake, `points` each, expiring on consecutive days from `firstDay` days ahead.
func buckets(_ count: Int, points: Int = 10, firstDay: Int = 30, neverExpiring: Int = 0) -> [[String: Any]] {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let formatter = DateFormatter()
    formatter.calendar = calendar
    formatter.timeZone = calendar.timeZone
    formatter.dateFormat = "yyyy-MM-dd"
    let today = calendar.startOfDay(for: Date())
    var result: [[String: Any]] = (0..<count).map { index in
        let day = calendar.date(byAdding: .day, value: firstDay + index, to: today) ?? today
        return ["id": "lopb_\(index)", "points": points, "status": "ACTIVE", "expires_at": formatter.string(from: day),
                "created_at": "2026-01-01T00:00:00.000Z"]
    }
    result += (0..<neverExpiring).map { index in
        ["id": "lopb_never_\(index)", "points": points, "status": "ACTIVE", "created_at": "2026-01-01T00:00:00.000Z"]
    }
    return result
}
