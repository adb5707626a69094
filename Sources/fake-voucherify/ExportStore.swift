import Codecs
import ExpiryDomain

/// One points-expiration export: the campaign's members as they were when it was created, its
/// parameters, its timeline and the download tokens handed out for it. Loop-confined.
final class ExportRecord {
    enum Status: String {
        case scheduled = "SCHEDULED", inProgress = "IN_PROGRESS", done = "DONE", error = "ERROR"
    }

    /// How a download's token fares.
    enum TokenVerdict: Equatable {
        case valid, missing, unknown, expired
    }

    /// Tokens kept per export; minting one more forgets the oldest.
    static let maxTokens = 100
    static let failureMessage = "Export failed: fake-voucherify was told to fail it (POST /_fake/exports fail_next)"

    let id: String
    let campaignId: String
    let createdAt: Timestamp
    /// Monotonic milliseconds at creation: the status follows the time since.
    let createdAtMs: Int64
    /// The settings when it was created; changing them later leaves this export alone.
    let delayMs: Int
    let fails: Bool
    let parameters: ExportParameters
    /// Its CSV's rows: every ACTIVE and EXPIRED bucket of the snapshot.
    let rowCount: Int
    /// The snapshot, until the first download orders it into `table`. A dictionary copy shares
    /// storage with the live data until either side changes, so taking it costs nothing.
    private var snapshot: [String: LoyaltyMember]
    private var ordered: ExportTable?
    private var tokens: [(value: String, expiresAtMs: Int64)] = []

    init(id: String, campaign: LoyaltyCampaign, parameters: ExportParameters, createdAt: Timestamp, nowMs: Int64,
         delayMs: Int, fails: Bool) {
        self.id = id
        campaignId = campaign.id
        self.createdAt = createdAt
        createdAtMs = nowMs
        self.delayMs = delayMs
        self.fails = fails
        self.parameters = parameters
        snapshot = campaign.members
        rowCount = snapshot.values.reduce(0) { $0 + $1.buckets.count + $1.expiredBuckets.count }
    }

    /// SCHEDULED for the first half of the delay, IN_PROGRESS for the second, then DONE (or
    /// ERROR for an export meant to fail). A zero delay is DONE at once.
    static func status(elapsedMs: Int64, delayMs: Int, fails: Bool) -> Status {
        if elapsedMs >= Int64(delayMs) { return fails ? .error : .done }
        return elapsedMs < Int64(delayMs) / 2 ? .scheduled : .inProgress
    }

    func status(nowMs: Int64) -> Status {
        ExportRecord.status(elapsedMs: nowMs - createdAtMs, delayMs: delayMs, fails: fails)
    }

    /// A fresh download token valid for `ttlMs`; expired tokens are forgotten on the way.
    func mintToken(nowMs: Int64, ttlMs: Int) -> String {
        tokens.removeAll { $0.expiresAtMs <= nowMs }
        if tokens.count >= ExportRecord.maxTokens { tokens.removeFirst(tokens.count - ExportRecord.maxTokens + 1) }
        let token = randomLowercaseAlphanumerics(32)
        tokens.append((token, nowMs.addingSaturating(Int64(ttlMs))))
        return token
    }

    func check(token: String?, nowMs: Int64) -> TokenVerdict {
        guard let token, !token.isEmpty else { return .missing }
        guard let minted = tokens.first(where: { $0.value == token }) else { return .unknown }
        return nowMs < minted.expiresAtMs ? .valid : .expired
    }

    /// The rows in the order asked: worked out on first use (not at creation, so creating a
    /// large export answers at once) and kept; the snapshot then goes.
    func table() -> ExportTable {
        if let ordered { return ordered }
        let table = ExportTable(campaignId: campaignId, snapshot: snapshot, order: parameters.order)
        ordered = table
        snapshot = [:]
        return table
    }

    /// Voucherify's export object as of `status`; `downloadURL` is the `result` of a DONE one.
    func json(status: Status, downloadURL: String?) -> JSONValue {
        let result: JSONValue
        switch status {
        case .done: result = downloadURL.map { .object(["url": .string($0)]) } ?? .null
        case .error: result = .object(["message": .string(ExportRecord.failureMessage)])
        case .scheduled, .inProgress: result = .null
        }
        return .object([
            "id": .string(id),
            "object": .string("export"),
            "created_at": .string(createdAt.rfc3339),
            "status": .string(status.rawValue),
            "channel": .string("API"),
            "exported_object": .string("points_expiration"),
            "parameters": parameters.given,
            "result": result,
            "user_id": .null,
        ])
    }
}

/// The exports the fake has made and its export settings (`--export-delay-ms`,
/// `--export-token-ttl-ms`, `POST /_fake/exports`). Bounded: at most `maxExports` exports and
/// `maxRows` rows over all of them are kept, the oldest dropped first (the newest is always
/// kept). Loop-confined.
final class ExportStore {
    struct Settings {
        var delayMs: Int
        var tokenTTLMs: Int
        /// How many of the next exports end in ERROR.
        var failNext: Int

        static let delays = 0...3_600_000
        static let tokenTTLs = 1...86_400_000
        static let failCounts = 0...1_000_000

        /// What is wrong with these settings, naming the fields as the caller knows them.
        func problem(delayName: String, ttlName: String) -> String? {
            if !Settings.delays.contains(delayMs) { return "\(delayName) must be \(Settings.delays.lowerBound)…\(Settings.delays.upperBound)" }
            if !Settings.tokenTTLs.contains(tokenTTLMs) {
                return "\(ttlName) must be \(Settings.tokenTTLs.lowerBound)…\(Settings.tokenTTLs.upperBound)"
            }
            if !Settings.failCounts.contains(failNext) {
                return "fail_next must be \(Settings.failCounts.lowerBound)…\(Settings.failCounts.upperBound)"
            }
            return nil
        }
    }

    /// The body `POST /_fake/exports` accepts; an omitted field keeps its value.
    struct Request: Decodable {
        let delay_ms: Int?
        let token_ttl_ms: Int?
        let fail_next: Int?
    }

    static let maxExports = 1000
    static let maxRows = 10_000_000

    private(set) var settings: Settings
    private var exports: [String: ExportRecord] = [:]
    /// Ids, oldest first.
    private var creationOrder: [String] = []
    private var keptRows = 0

    init(_ settings: Settings) {
        self.settings = settings
    }

    /// Applies `request` over the current settings; changes nothing on bad input. Exports
    /// already made keep the delay and fate they were created with.
    func configure(_ request: Request) throws(ControlError) {
        var next = settings
        next.delayMs = request.delay_ms ?? next.delayMs
        next.tokenTTLMs = request.token_ttl_ms ?? next.tokenTTLMs
        next.failNext = request.fail_next ?? next.failNext
        if let problem = next.problem(delayName: "delay_ms", ttlName: "token_ttl_ms") { throw .badRequest(problem) }
        settings = next
    }

    /// A new export of `campaign` as it is now.
    func create(campaign: LoyaltyCampaign, parameters: ExportParameters, nowMs: Int64) -> ExportRecord {
        let fails = settings.failNext > 0
        if fails { settings.failNext -= 1 }
        var id: String
        repeat {
            id = "exp_" + randomLowercaseAlphanumerics(20)
        } while exports[id] != nil
        let record = ExportRecord(id: id, campaign: campaign, parameters: parameters, createdAt: .now(), nowMs: nowMs,
                                  delayMs: settings.delayMs, fails: fails)
        exports[id] = record
        creationOrder.append(id)
        keptRows += record.rowCount
        while creationOrder.count > 1, creationOrder.count > ExportStore.maxExports || keptRows > ExportStore.maxRows {
            let oldest = creationOrder.removeFirst()
            keptRows -= exports.removeValue(forKey: oldest)?.rowCount ?? 0
        }
        return record
    }

    func export(id: String) -> ExportRecord? { exports[id] }

    /// `GET /_fake/exports`, and the settings part of `POST`'s answer.
    var settingsJSON: [(key: String, value: JSONValue)] {
        [("delay_ms", .integer(settings.delayMs)), ("token_ttl_ms", .integer(settings.tokenTTLMs)),
         ("fail_next", .integer(settings.failNext))]
    }

    var json: JSONValue {
        .object(JSONObject(members: settingsJSON + [("exports", .integer(exports.count)), ("rows", .integer(keptRows))]))
    }
}
