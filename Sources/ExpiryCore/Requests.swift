/// ProtoJSON field access for request messages: both spellings accepted, the last occurrence
/// wins, `null` means unset, and a wrong type is an `invalidRequest` naming the field.
extension JSONObject {
    /// The last member spelled either way; nil when absent or null.
    public func protoField(_ jsonName: String, _ protoName: String) -> JSONValue? {
        for member in members.reversed() where member.key == jsonName || member.key == protoName {
            if case .null = member.value { return nil }
            return member.value
        }
        return nil
    }

    public func protoString(_ jsonName: String, _ protoName: String) throws(ExpiryError) -> String? {
        guard let value = protoField(jsonName, protoName) else { return nil }
        guard case .string(let string) = value else { throw .invalidRequest("\(protoName) must be a string") }
        return string
    }
}

extension JSONValue {
    /// The top level of a request message, which ProtoJSON requires to be an object.
    public func requestObject() throws(ExpiryError) -> JSONObject {
        guard case .object(let object) = self else { throw .invalidRequest("the request message must be a JSON object") }
        return object
    }
}

extension JSONParser {
    /// Parses a request body, turning syntax errors into `invalidRequest`.
    public static func parseRequest(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws(ExpiryError) -> JSONValue {
        do {
            return try parseDocument(bytes, maxDepth: maxDepth)
        } catch {
            throw .invalidRequest("the request body is not valid JSON: \(error)")
        }
    }

    public static func parseRequest(_ bytes: [UInt8], maxDepth: Int = 64) throws(ExpiryError) -> JSONValue {
        try withUnsafeBytesTyped(bytes) { buffer throws(ExpiryError) in try parseRequest(buffer, maxDepth: maxDepth) }
    }
}

/// Longest campaign or member accepted, in UTF-8 bytes: far above real ids and card codes,
/// small enough to keep cache keys and upstream URLs bounded.
let maxIdentifierBytes = 512

/// Validates a required identifier field (campaign, member).
func requiredIdentifier(_ value: String?, field: String) throws(ExpiryError) -> String {
    guard let value, !value.isEmpty else { throw .invalidRequest("\(field) is required") }
    guard value.utf8.count <= maxIdentifierBytes else {
        throw .invalidRequest("\(field) is longer than \(maxIdentifierBytes) bytes")
    }
    return value
}

/// Decodes an optional `YYYY-MM-DD` field.
func optionalDate(_ value: String?, field: String) throws(ExpiryError) -> CalendarDate? {
    guard let value else { return nil }
    guard let date = CalendarDate(iso: value) else {
        throw .invalidRequest("\(field) must be a real date written YYYY-MM-DD")
    }
    return date
}

public struct GetMemberExpirationRequest: Equatable, Sendable {
    public var campaign: String
    public var member: String
    public var expiringBefore: CalendarDate?

    public init(campaign: String, member: String, expiringBefore: CalendarDate?) {
        self.campaign = campaign
        self.member = member
        self.expiringBefore = expiringBefore
    }

    public init(json: JSONValue) throws(ExpiryError) {
        let object = try json.requestObject()
        campaign = try requiredIdentifier(object.protoString("campaign", "campaign"), field: "campaign")
        member = try requiredIdentifier(object.protoString("member", "member"), field: "member")
        expiringBefore = try optionalDate(object.protoString("expiringBefore", "expiring_before"), field: "expiring_before")
    }
}

public struct InvalidateMemberRequest: Equatable, Sendable {
    public var campaign: String
    public var member: String

    public init(json: JSONValue) throws(ExpiryError) {
        let object = try json.requestObject()
        campaign = try requiredIdentifier(object.protoString("campaign", "campaign"), field: "campaign")
        member = try requiredIdentifier(object.protoString("member", "member"), field: "member")
    }

    /// `InvalidateMemberResponse` as ProtoJSON (scalars always emitted).
    public static func responseBody(invalidated: Bool) -> [UInt8] {
        Array((invalidated ? #"{"invalidated":true}"# : #"{"invalidated":false}"#).utf8)
    }
}
