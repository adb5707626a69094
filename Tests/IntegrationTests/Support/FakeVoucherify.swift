import Foundation

/// The project's fake Voucherify, started on a free loopback port.
final class FakeVoucherify: @unchecked Sendable {
    static let appID = "test-app-id"
    static let appToken = "test-app-token"
    static let campaignID = "camp_test_loyalty"
    static let campaignName = "Test Loyalty"

    let baseURL: String
    private let child: ChildProcess

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

    /// Creates or replaces a member with exactly these buckets (data-file bucket format).
    func putMember(_ member: String, buckets: [[String: Any]], voucherID: String = "v_test_1") throws {
        let body: [String: Any] = ["campaign": Self.campaignID, "campaign_name": Self.campaignName, "member": member,
                                   "voucher_id": voucherID, "buckets": buckets]
        try control("PUT", "members", body)
    }

    /// Makes the next `count` API calls fail (see the fake's `/_fake/fail`); nil count = until cleared.
    func fail(_ settings: [String: Any]) throws { try control("POST", "fail", settings) }

    func resetStats() throws { try control("POST", "stats/reset", nil) }

    /// `POST /_fake/expire`: drops the member's due buckets and delivers the webhook; returns the fake's report.
    func expire(_ request: [String: Any]) throws -> [String: Any] {
        let result = try CurlClient.request("POST", "\(baseURL)/_fake/expire", body: try JSONSerialization.data(withJSONObject: request),
                                            headers: ["content-type: application/json"], http2: false)
        guard result.status == 200 else { throw TestFailure("fake POST /_fake/expire: \(result.status) \(result.text)") }
        return result.json
    }

    /// API calls received, per "campaign|member|page" key.
    func pageCalls() throws -> [String: Int] {
        let result = try CurlClient.request("GET", "\(baseURL)/_fake/stats", http2: false)
        return (result.json["by_page"] as? [String: Int]) ?? [:]
    }

    func totalCalls() throws -> Int {
        (try CurlClient.request("GET", "\(baseURL)/_fake/stats", http2: false).json["calls"] as? Int) ?? -1
    }

    func control(_ method: String, _ path: String, _ body: [String: Any]?) throws {
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let result = try CurlClient.request(method, "\(baseURL)/_fake/\(path)", body: data, headers: ["content-type: application/json"], http2: false)
        guard (200..<300).contains(result.status) else { throw TestFailure("fake \(method) /_fake/\(path): \(result.status) \(result.text)") }
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
