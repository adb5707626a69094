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
