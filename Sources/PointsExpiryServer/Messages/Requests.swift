import Codecs
import ExpiryDomain
import RPC

/// Validates a required identifier field (campaign, member).
func requiredIdentifier(_ value: String?, field: String) throws(RPCError) -> String {
    guard let value, !value.isEmpty else { throw RPCError(.invalidArgument, "\(field) is required") }
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
    var campaign: String
    var member: String
    var expiringBefore: CalendarDate?

    init(campaign: String, member: String, expiringBefore: CalendarDate?) {
        self.campaign = campaign
        self.member = member
        self.expiringBefore = expiringBefore
    }

    init(json: JSONValue) throws(RPCError) {
        let object = try json.requestObject()
        campaign = try requiredIdentifier(object.protoString("campaign", "campaign"), field: "campaign")
        member = try requiredIdentifier(object.protoString("member", "member"), field: "member")
        expiringBefore = try optionalDate(object.protoString("expiringBefore", "expiring_before"), field: "expiring_before")
    }
}

struct InvalidateMemberRequest: RPCRequest, Equatable, Sendable {
    var campaign: String
    var member: String

    init(json: JSONValue) throws(RPCError) {
        let object = try json.requestObject()
        campaign = try requiredIdentifier(object.protoString("campaign", "campaign"), field: "campaign")
        member = try requiredIdentifier(object.protoString("member", "member"), field: "member")
    }

    /// `InvalidateMemberResponse` as ProtoJSON (scalars always emitted).
    static func responseBody(invalidated: Bool) -> [UInt8] {
        Array((invalidated ? #"{"invalidated":true}"# : #"{"invalidated":false}"#).utf8)
    }
}

/// `members` of a batch request: 1…`limit` strings. Each member is checked on its own later
/// (`memberProblem`), so one bad code fails alone, not the batch.
func memberList(_ object: JSONObject, limit: Int) throws(RPCError) -> [String] {
    guard let value = object.protoField("members", "members") else {
        throw RPCError(.invalidArgument, "members is required: list 1 to \(limit) card codes")
    }
    guard case .array(let items) = value else { throw RPCError(.invalidArgument, "members must be a list of strings") }
    guard !items.isEmpty else { throw RPCError(.invalidArgument, "members is empty: list 1 to \(limit) card codes") }
    guard items.count <= limit else {
        throw RPCError(.invalidArgument, "members lists \(items.count) card codes; at most \(limit) per call")
    }
    var members: [String] = []
    members.reserveCapacity(items.count)
    for (index, item) in items.enumerated() {
        guard case .string(let member) = item else { throw RPCError(.invalidArgument, "members[\(index)] must be a string") }
        members.append(member)
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
    var campaign: String
    var members: [String]
    var expiringBefore: CalendarDate?

    init(json: JSONValue) throws(RPCError) {
        let object = try json.requestObject()
        campaign = try requiredIdentifier(object.protoString("campaign", "campaign"), field: "campaign")
        members = try memberList(object, limit: Self.maxMembers)
        expiringBefore = try optionalDate(object.protoString("expiringBefore", "expiring_before"), field: "expiring_before")
    }
}

struct WarmMembersRequest: RPCRequest, Equatable, Sendable {
    static let maxMembers = 1000
    var campaign: String
    var members: [String]
    var force: Bool

    init(json: JSONValue) throws(RPCError) {
        let object = try json.requestObject()
        campaign = try requiredIdentifier(object.protoString("campaign", "campaign"), field: "campaign")
        members = try memberList(object, limit: Self.maxMembers)
        switch object.protoField("force", "force") {
        case nil: force = false
        case .bool(let value)?: force = value
        default: throw RPCError(.invalidArgument, "force must be true or false")
        }
    }
}
