import APIMessages
import Codecs
import ExpiryDomain
import RPC

// Requests arrive as generated messages (either codec); these types add what the `.proto`
// cannot say: required fields, lengths, list sizes, real dates.

/// Validates a required identifier field (campaign, member). `.` and `..` are refused: they are
/// no card or campaign code, and although every upstream path segment is percent-encoded, a proxy
/// or server that decodes `%2E` before normalising the path would read them as dot segments.
func requiredIdentifier(_ value: String, field: String) throws(RPCError) -> String {
    guard !value.isEmpty else { throw RPCError(.invalidArgument, "\(field) is required") }
    guard value != ".", value != ".." else {
        throw RPCError(.invalidArgument, "\(field) \"\(value)\" is a path dot segment, not a code")
    }
    guard value.utf8.count <= maxIdentifierBytes else {
        throw RPCError(.invalidArgument, "\(field) is longer than \(maxIdentifierBytes) bytes")
    }
    return value
}

/// Decodes an optional `YYYY-MM-DD` field.
func optionalDate(_ value: String?, field: String) throws(RPCError) -> CalendarDate? {
    guard let value else { return nil }
    guard let date = CalendarDate(iso: value) else {
        throw RPCError(.invalidArgument, "\(field) must be a real date written YYYY-MM-DD")
    }
    return date
}

struct GetMemberExpirationRequest: RPCRequest, Equatable, Sendable {
    static let jsonShape = #"{"campaign": string, "member": string, "expiringBefore": "YYYY-MM-DD" (optional)}"#
    var campaign: String
    var member: String
    var expiringBefore: CalendarDate?

    init(campaign: String, member: String, expiringBefore: CalendarDate?) {
        self.campaign = campaign
        self.member = member
        self.expiringBefore = expiringBefore
    }

    init(message: Pointsexpiry_V1_GetMemberExpirationRequest) throws(RPCError) {
        try self.init(campaign: message.campaign, member: message.member, expiringBefore: message.hasExpiringBefore ? message.expiringBefore : nil)
    }

    private init(campaign: String, member: String, expiringBefore: String?) throws(RPCError) {
        self.campaign = try requiredIdentifier(campaign, field: "campaign")
        self.member = try requiredIdentifier(member, field: "member")
        self.expiringBefore = try optionalDate(expiringBefore, field: "expiring_before")
    }

    /// JSON is read by hand: this is every hit's request, and the generated decoder cost ~3,400
    /// more instructions per hit than this (callgrind, README "Benchmark"). The commonest shape
    /// (plain string members with known keys) is read in place, without a tree; other messages of
    /// the known fields go through the JSON tree; anything else (unknown fields, which the parsers
    /// skip with different strictness; syntax the hand-written readers refuse; a request that fails
    /// its checks) goes to the generated decoder, so the answer, or the error, is always the
    /// generated one's. Tests hold the three to the same answers.
    static func decode(_ message: RPCMessage) throws(RPCError) -> GetMemberExpirationRequest {
        guard message.codec == .json, !message.bytes.isEmpty, let request = decodeFlat(message.bytes) ?? decodeTree(message.bytes) else {
            return try decodeGenerated(message)
        }
        return request
    }

    /// The keys `decodeFlat` takes, by index: both spellings of each field.
    private static let flatKeys: [StaticString] = ["campaign", "member", "expiringBefore", "expiring_before"]

    /// Plain string members read where they lie: nil when the message has another shape or the
    /// request fails its checks.
    private static func decodeFlat(_ bytes: [UInt8]) -> GetMemberExpirationRequest? {
        bytes.withUnsafeBytes { bytes in
            // The last occurrence wins, either spelling; null unsets.
            var campaign: Range<Int>?
            var member: Range<Int>?
            var expiringBefore: Range<Int>?
            let flat = FlatJSONObject.scan(bytes, keys: flatKeys) { key, value in
                switch key {
                case 0: campaign = value
                case 1: member = value
                default: expiringBefore = value
                }
            }
            guard flat else { return nil }
            // Plain ASCII (the scan took no other bytes), so each String is made without validating.
            func text(_ range: Range<Int>?) -> String? { range.map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0]), as: UTF8.self) } }
            return try? GetMemberExpirationRequest(campaign: text(campaign) ?? "", member: text(member) ?? "", expiringBefore: text(expiringBefore))
        }
    }

    /// The message as a JSON tree of the known fields: nil as for `decodeFlat`.
    private static func decodeTree(_ bytes: [UInt8]) -> GetMemberExpirationRequest? {
        guard let object = try? JSONParser.parseRequest(bytes, maxDepth: 2).requestObject(),
              object.members.allSatisfy({ isKnownJSONKey($0.key) }) else { return nil }
        return try? GetMemberExpirationRequest(campaign: object.protoString("campaign", "campaign") ?? "",
                                               member: object.protoString("member", "member") ?? "",
                                               expiringBefore: object.protoString("expiringBefore", "expiring_before"))
    }

    private static func isKnownJSONKey(_ key: String) -> Bool {
        switch key {
        case "campaign", "member", "expiringBefore", "expiring_before": return true
        default: return false
        }
    }
}

struct InvalidateMemberRequest: RPCRequest, Equatable, Sendable {
    static let jsonShape = #"{"campaign": string, "member": string}"#
    var campaign: String
    var member: String

    init(message: Pointsexpiry_V1_InvalidateMemberRequest) throws(RPCError) {
        campaign = try requiredIdentifier(message.campaign, field: "campaign")
        member = try requiredIdentifier(message.member, field: "member")
    }
}

/// `members` of a batch request: 1…`limit` strings. Each member is checked on its own later
/// (`memberProblem`), so one bad code fails alone, not the batch.
func memberList(_ members: [String], limit: Int) throws(RPCError) -> [String] {
    guard !members.isEmpty else { throw RPCError(.invalidArgument, "members is empty or missing: list 1 to \(limit) card codes") }
    guard members.count <= limit else {
        throw RPCError(.invalidArgument, "members lists \(members.count) card codes; at most \(limit) per call")
    }
    return members
}

/// Why one member of a batch cannot be asked for (empty, too long), or nil.
func memberProblem(_ member: String) -> RPCError? {
    do {
        _ = try requiredIdentifier(member, field: "member")
        return nil
    } catch {
        return error
    }
}

/// A batch's members without repeats, and where each requested position finds its answer:
/// a member listed twice is asked for once and answered twice.
struct DistinctMembers: Equatable, Sendable {
    /// In order of first appearance.
    let members: [String]
    /// For each requested position, its index in `members`.
    let positions: [Int]

    init(_ requested: [String]) {
        var indexOf: [String: Int] = [:]
        var members: [String] = []
        positions = requested.map { member in
            if let index = indexOf[member] { return index }
            indexOf[member] = members.count
            members.append(member)
            return members.count - 1
        }
        self.members = members
    }
}

struct BatchGetMemberExpirationsRequest: RPCRequest, Equatable, Sendable {
    static let maxMembers = 100
    static let jsonShape = #"{"campaign": string, "members": [string, ...], "expiringBefore": "YYYY-MM-DD" (optional)}"#
    var campaign: String
    var members: [String]
    var expiringBefore: CalendarDate?

    init(message: Pointsexpiry_V1_BatchGetMemberExpirationsRequest) throws(RPCError) {
        campaign = try requiredIdentifier(message.campaign, field: "campaign")
        members = try memberList(message.members, limit: Self.maxMembers)
        expiringBefore = try optionalDate(message.hasExpiringBefore ? message.expiringBefore : nil, field: "expiring_before")
    }
}

struct WarmMembersRequest: RPCRequest, Equatable, Sendable {
    static let maxMembers = 1000
    static let jsonShape = #"{"campaign": string, "members": [string, ...], "force": true|false (optional)}"#
    var campaign: String
    var members: [String]
    var force: Bool

    init(message: Pointsexpiry_V1_WarmMembersRequest) throws(RPCError) {
        campaign = try requiredIdentifier(message.campaign, field: "campaign")
        members = try memberList(message.members, limit: Self.maxMembers)
        force = message.force
    }
}

struct GetCampaignExpirationRequest: RPCRequest, Equatable, Sendable {
    static let jsonShape = #"{"campaign": string, "from": "YYYY-MM-DD" (optional), "to": "YYYY-MM-DD" (optional)}"#
    var campaign: String
    /// nil: today in the project's time zone, decided when the call is answered.
    var from: CalendarDate?
    /// nil: no end.
    var to: CalendarDate?

    init(message: Pointsexpiry_V1_GetCampaignExpirationRequest) throws(RPCError) {
        campaign = try requiredIdentifier(message.campaign, field: "campaign")
        from = try optionalDate(message.hasFrom ? message.from : nil, field: "from")
        to = try optionalDate(message.hasTo ? message.to : nil, field: "to")
        if let from, let to, to < from {
            throw RPCError(.invalidArgument, "to (\(to.iso)) is before from (\(from.iso)): the range is inclusive, from ≤ to")
        }
    }
}
