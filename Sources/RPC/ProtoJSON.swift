import Codecs

/// ProtoJSON field access for a hand-written request decoder (the hit path's, where the generated
/// decoder measured dearer; see `RPCRequest.decode`): both spellings accepted, the last occurrence
/// wins, `null` means unset, and a wrong type is an `invalid_argument` naming the field.
extension JSONObject {
    /// The last member spelled either way; nil when absent or null.
    public func protoField(_ jsonName: String, _ protoName: String) -> JSONValue? {
        for member in members.reversed() where member.key == jsonName || member.key == protoName {
            if case .null = member.value { return nil }
            return member.value
        }
        return nil
    }

    public func protoString(_ jsonName: String, _ protoName: String) throws(RPCError) -> String? {
        guard let value = protoField(jsonName, protoName) else { return nil }
        guard case .string(let string) = value else { throw RPCError(.invalidArgument, "\(protoName) must be a string") }
        return string
    }
}

extension JSONValue {
    /// The top level of a request message, which ProtoJSON requires to be an object.
    public func requestObject() throws(RPCError) -> JSONObject {
        guard case .object(let object) = self else { throw RPCError(.invalidArgument, "the request message must be a JSON object") }
        return object
    }
}

extension JSONParser {
    /// Parses a request body, turning syntax errors into `invalid_argument`.
    public static func parseRequest(_ bytes: [UInt8], maxDepth: Int = 64) throws(RPCError) -> JSONValue {
        do {
            return try parseDocument(bytes, maxDepth: maxDepth)
        } catch {
            throw RPCError(.invalidArgument, "the request body is not valid JSON: \(error)")
        }
    }
}
