import SwiftProtobuf

/// How a message is written on the wire. Both come from the types generated from the `.proto`,
/// so the two can never disagree about a request.
public enum MessageCodec: Sendable, Equatable {
    case json
    case proto

    public var name: String {
        switch self {
        case .json: return "json"
        case .proto: return "proto"
        }
    }
}

/// A request message as it arrived (unframed and decompressed), still in its codec.
public struct RPCMessage: Sendable {
    public let codec: MessageCodec
    public let bytes: [UInt8]

    public init(codec: MessageCodec, bytes: [UInt8]) {
        self.codec = codec
        self.bytes = bytes
    }

    /// Nesting deeper than this is refused before it can exhaust the stack.
    static let maxDepth = 64

    /// The message, decoded with the generated type. ProtoJSON rules come with it: both field
    /// spellings, int64 as string or number, `null` as unset; unknown fields are ignored in both
    /// codecs (so callers built from a newer `.proto` still work). Empty bytes are the empty message.
    public func decode<Message: SwiftProtobuf.Message>(_: Message.Type = Message.self) throws(RPCError) -> Message {
        guard !bytes.isEmpty else { return Message() }
        do {
            switch codec {
            case .json:
                var options = JSONDecodingOptions()
                options.ignoreUnknownFields = true
                options.messageDepthLimit = Self.maxDepth
                return try Message(jsonUTF8Bytes: bytes, options: options)
            case .proto:
                var options = BinaryDecodingOptions()
                options.messageDepthLimit = Self.maxDepth
                return try Message(serializedBytes: bytes, options: options)
            }
        } catch let error as JSONDecodingError {
            throw RPCError(.invalidArgument, "the request is not a valid JSON \(Message.protoMessageName): \(Self.describe(error))")
        } catch {
            throw RPCError(.invalidArgument, "the request is not a valid binary \(Message.protoMessageName) (\(error))")
        }
    }

    /// swift-protobuf's JSON errors are bare case names; say what each means to a caller.
    private static func describe(_ error: JSONDecodingError) -> String {
        switch error {
        case .schemaMismatch: return "a field has the wrong type"
        case .malformedString, .invalidUTF8: return "a string is malformed"
        case .malformedNumber, .leadingZero: return "a number is malformed"
        case .numberRange: return "a number is out of range"
        case .malformedBool: return "a bool must be true or false"
        case .illegalNull: return "null where a value is required"
        case .truncated: return "the JSON ends too early"
        case .trailingGarbage: return "text follows the JSON object"
        case .messageDepthLimit: return "nested deeper than \(maxDepth) levels"
        case .conflictingOneOf: return "two members of a oneof are set"
        case .unrecognizedEnumValue: return "an enum value is not known"
        case .unknownField(let name): return "unknown field \"\(name)\""
        default: return "malformed JSON (\(error))"
        }
    }
}
