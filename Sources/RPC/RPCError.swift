import Codecs

/// RPC status codes (the gRPC set, with Connect's names as raw values) and their HTTP status
/// mapping (connectrpc.com/docs/protocol). The one place an error code becomes wire bytes.
public enum RPCCode: String, Sendable, CaseIterable {
    case canceled
    case unknown
    case invalidArgument = "invalid_argument"
    case deadlineExceeded = "deadline_exceeded"
    case notFound = "not_found"
    case alreadyExists = "already_exists"
    case permissionDenied = "permission_denied"
    case resourceExhausted = "resource_exhausted"
    case failedPrecondition = "failed_precondition"
    case aborted
    case outOfRange = "out_of_range"
    case unimplemented
    case `internal`
    case unavailable
    case dataLoss = "data_loss"
    case unauthenticated

    /// The numeric code gRPC sends as `grpc-status`.
    public var grpcStatus: Int {
        switch self {
        case .canceled: return 1
        case .unknown: return 2
        case .invalidArgument: return 3
        case .deadlineExceeded: return 4
        case .notFound: return 5
        case .alreadyExists: return 6
        case .permissionDenied: return 7
        case .resourceExhausted: return 8
        case .failedPrecondition: return 9
        case .aborted: return 10
        case .outOfRange: return 11
        case .unimplemented: return 12
        case .internal: return 13
        case .unavailable: return 14
        case .dataLoss: return 15
        case .unauthenticated: return 16
        }
    }

    public var httpStatus: Int {
        switch self {
        case .canceled: return 499
        case .unknown, .internal, .dataLoss: return 500
        case .invalidArgument, .failedPrecondition, .outOfRange: return 400
        case .deadlineExceeded: return 504
        case .notFound: return 404
        case .alreadyExists, .aborted: return 409
        case .permissionDenied: return 403
        case .resourceExhausted: return 429
        case .unimplemented: return 501
        case .unavailable: return 503
        case .unauthenticated: return 401
        }
    }
}

/// An error as callers see it: a code and a message, written as Connect's error JSON.
public struct RPCError: Error, Equatable, Sendable {
    public let code: RPCCode
    public let message: String
    /// Seconds until a retry can succeed (an upstream rate limit), sent as `retry-after`.
    public var retryAfterSeconds: Int?

    public init(_ code: RPCCode, _ message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// `{"code":"...","message":"..."}`
    public func jsonBody() -> [UInt8] {
        var writer = JSONWriter(capacity: 48 + message.utf8.count)
        writer.appendRaw("{\"code\":")
        writer.appendString(code.rawValue)
        writer.appendRaw(",\"message\":")
        writer.appendString(message)
        writer.appendRaw(byte: UInt8(ascii: "}"))
        return writer.bytes
    }
}

