import Codecs

/// What the fake saw of the API calls since the last reset: how many member reads, per
/// "<campaign>|<member>" and per "<campaign>|<member>|<page>", what a test needs to assert that a
/// caller spared Voucherify (budget never exceeded, one read per member at a time), and the
/// export calls. Campaign and member are the decoded path segments as the caller gave them.
/// Loop-confined.
final class CallStats {
    /// The most raw paths kept; older ones are dropped first.
    static let maxRecordedPaths = 1000

    private(set) var calls = 0
    /// Every path outside `/_fake/` as it arrived (still percent-encoded, dot segments and all),
    /// routed or not: the evidence of exactly which URLs a caller asked for.
    private var paths: [String] = []
    private var byMember: [String: Int] = [:]
    private var byPage: [String: Int] = [:]
    /// Calls answered with a failure `POST /_fake/fail` injected (drops included).
    private var failed = 0
    /// 429s sent because a call was over the enforced rate limit.
    private var rateLimited = 0
    /// The most calls that arrived in one rate-limit window, refused ones included.
    private var maxInWindow = 0
    private var concurrency = ConcurrencyHighWater()
    private var exports = ExportCounts()

    /// The export calls (`exports` in the JSON). They count in the rate-limit window (so in
    /// `rate_limited` and `max_in_window`), not in `calls`, which counts member reads.
    private struct ExportCounts {
        /// Exports created, in all and per campaign as the caller spelled it.
        var created = 0
        var byCampaign: [String: Int] = [:]
        /// Status requests (`GET /v1/exports/{id}`) that arrived, refused ones included.
        var polls = 0
        /// CSVs served, and download requests refused (401, 404; 429s count in `rate_limited`).
        var downloads = 0
        var rejectedDownloads = 0
    }

    static func memberKey(campaign: String, member: String) -> String { "\(campaign)|\(member)" }

    /// A call arrived; `finished` must follow once it is answered or abandoned.
    func arrived(campaign: String, member: String, page: String) {
        calls += 1
        let key = CallStats.memberKey(campaign: campaign, member: member)
        byMember[key, default: 0] += 1
        byPage["\(key)|\(page)", default: 0] += 1
        concurrency.begin(key)
    }

    func finished(campaign: String, member: String) {
        concurrency.end(CallStats.memberKey(campaign: campaign, member: member))
    }

    func sawPath(_ rawPath: String) {
        if paths.count >= Self.maxRecordedPaths { paths.removeFirst(paths.count - Self.maxRecordedPaths + 1) }
        paths.append(rawPath)
    }

    func sawWindow(callsInWindow: Int) {
        maxInWindow = max(maxInWindow, callsInWindow)
    }

    func countRateLimited() { rateLimited += 1 }

    func countFailed() { failed += 1 }

    func exportCreated(campaign: String) {
        exports.created += 1
        exports.byCampaign[campaign, default: 0] += 1
    }

    func exportPolled() { exports.polls += 1 }

    func exportDownloaded() { exports.downloads += 1 }

    func exportDownloadRejected() { exports.rejectedDownloads += 1 }

    /// Calls in progress stay counted: they end after the reset, and are the new concurrency floor.
    func reset() {
        calls = 0
        byMember.removeAll()
        byPage.removeAll()
        paths.removeAll()
        failed = 0
        rateLimited = 0
        maxInWindow = 0
        concurrency.resetHighs()
        exports = ExportCounts()
    }

    var json: JSONValue {
        func sortedByKey(_ counts: [String: Int]) -> JSONValue {
            .object(JSONObject(members: counts.sorted { $0.key < $1.key }.map { (key: $0.key, value: .integer($0.value)) }))
        }
        return .object([
            "calls": .integer(calls),
            "by_member": sortedByKey(byMember),
            "by_page": sortedByKey(byPage),
            "failed": .integer(failed),
            "rate_limited": .integer(rateLimited),
            "max_in_window": .integer(maxInWindow),
            "max_concurrent": .integer(concurrency.highest),
            "by_member_max_concurrent": sortedByKey(concurrency.highestByKey),
            "paths": .array(paths.map { .string($0) }),
            "exports": .object([
                "created": .integer(exports.created),
                "by_campaign": sortedByKey(exports.byCampaign),
                "polls": .integer(exports.polls),
                "downloads": .integer(exports.downloads),
                "rejected_downloads": .integer(exports.rejectedDownloads),
            ]),
        ])
    }
}

/// Calls in progress (arrived, not yet answered) and the most there were at once, in all and
/// per key: the evidence that a caller never sent two reads of one member at the same time.
struct ConcurrencyHighWater {
    private var inProgress = 0
    /// Only keys with calls in progress, so it stays as small as the traffic at any moment.
    private var inProgressByKey: [String: Int] = [:]
    private(set) var highest = 0
    private(set) var highestByKey: [String: Int] = [:]

    mutating func begin(_ key: String) {
        inProgress += 1
        highest = max(highest, inProgress)
        let forKey = inProgressByKey[key, default: 0] + 1
        inProgressByKey[key] = forKey
        highestByKey[key] = max(highestByKey[key, default: 0], forKey)
    }

    mutating func end(_ key: String) {
        inProgress -= 1
        let forKey = inProgressByKey[key, default: 1] - 1
        inProgressByKey[key] = forKey > 0 ? forKey : nil
    }

    /// Forgets the highs; what is in progress now is where the new ones start.
    mutating func resetHighs() {
        highest = inProgress
        highestByKey = inProgressByKey
    }
}
