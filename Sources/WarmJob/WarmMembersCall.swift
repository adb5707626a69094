import Codecs
import HTTPClient

/// The WarmMembers RPC as the job speaks it (Connect unary JSON): the request it sends and what
/// an answer means. Pure; `WarmRunner` does the sending.
public enum WarmMembersCall {
    public static let path = "/pointsexpiry.v1.PointsExpiryService/WarmMembers"
    /// The service's own cap on a WarmMembers call.
    public static let maxCallMilliseconds: Int64 = 300_000
    /// The longest a call asks for. A stopped job waits for its calls in flight, and Kubernetes
    /// kills a pod 30 s after SIGTERM by default: the service answers shortly before this with
    /// the members it did not reach in `deferred`, which the job sends again.
    public static let longestCallMilliseconds: Int64 = 20_000
    /// curl's limit runs this much past the call's Connect deadline: the service answers shortly
    /// before that deadline, and its answer must not be cut off on the way.
    public static let transferSlackMilliseconds: Int64 = 5_000
    /// A service that has not accepted the connection by then is not going to.
    public static let connectMilliseconds = 5_000

    public static func body(campaign: String, members: [String], force: Bool) -> [UInt8] {
        var writer = JSONWriter(capacity: 64 + members.reduce(0) { $0 + $1.utf8.count + 3 })
        writer.appendRaw(#"{"campaign":"#)
        writer.appendString(campaign)
        writer.appendRaw(#","members":["#)
        for (index, member) in members.enumerated() {
            if index > 0 { writer.appendRaw(",") }
            writer.appendString(member)
        }
        writer.appendRaw(force ? "],\"force\":true}" : "],\"force\":false}")
        return writer.bytes
    }

    /// The deadline a call asks for (`connect-timeout-ms`): the rest of the job, at most
    /// `longestCallMilliseconds`, at least 1 ms (the header takes no 0).
    public static func connectTimeoutMilliseconds(jobTimeLeft: Int64) -> Int64 {
        min(longestCallMilliseconds, max(1, jobTimeLeft))
    }

    /// What a finished exchange means for the job.
    public static func outcome(_ result: Result<HTTPClientResponse, HTTPClientError>) -> WarmCallOutcome {
        switch result {
        case .success(let response):
            return outcome(status: response.status, retryAfter: response.header("retry-after"), body: response.body)
        case .failure(.connectionFailed(let why)):
            return .notConnected(message: why)
        case .failure(.transport(let why)):
            return .broken(message: why)
        case .failure(let error):
            return .retryable(code: "unavailable", message: error.description, retryAfterSeconds: nil)
        }
    }

    public static func outcome(status: Int, retryAfter: String?, body: [UInt8]) -> WarmCallOutcome {
        let object = (try? JSONParser.parse(body))?.objectValue
        if status == 200 {
            guard let object else {
                return .retryable(code: "internal", message: "the service's answer is not a JSON object", retryAfterSeconds: nil)
            }
            return .answered(WarmAnswer(object))
        }
        let code = object?["code"]?.stringValue ?? connectCode(httpStatus: status)
        let message = object?["message"]?.stringValue ?? "HTTP \(status)"
        switch code {
        case "unimplemented":
            return .unsupported(message: message)
        case "unavailable", "resource_exhausted", "deadline_exceeded", "internal", "unknown", "aborted":
            // Seconds only; an HTTP date is not worth parsing here: the backoff covers it.
            return .retryable(code: code, message: message, retryAfterSeconds: retryAfter.flatMap { Int(trimmed($0)) })
        default:
            return .rejected(code: code, message: message)
        }
    }

    /// Connect's code for an HTTP status that came without a Connect error body (a proxy's page).
    private static func connectCode(httpStatus: Int) -> String {
        switch httpStatus {
        case 400: return "internal"
        case 401: return "unauthenticated"
        case 403: return "permission_denied"
        case 404: return "unimplemented"
        case 429, 502, 503, 504: return "unavailable"
        default: return "unknown"
        }
    }
}

/// What one WarmMembers call came back with.
public enum WarmCallOutcome: Equatable, Sendable {
    case answered(WarmAnswer)
    /// The whole call was refused for a reason a retry will not fix: its members fail with `code`.
    case rejected(code: String, message: String)
    /// Worth sending again after a pause.
    case retryable(code: String, message: String, retryAfterSeconds: Int?)
    /// No connection was made: refused, unresolvable, timed out, or TLS failed.
    case notConnected(message: String)
    /// Connected, but the exchange broke without an answer: a connection reset, or a peer that
    /// does not speak HTTP/2 (an HTTP/1.1-only one breaks the h2c preface at once).
    case broken(message: String)
    /// The service has no WarmMembers.
    case unsupported(message: String)
}

public struct MemberFailure: Equatable, Sendable {
    public var member: String
    public var code: String
    public var message: String

    public init(member: String, code: String, message: String) {
        self.member = member
        self.code = code
        self.message = message
    }
}

/// A WarmMembers response. Counts are clamped to 0…Int32.max: a broken or hostile answer must
/// not make the job's arithmetic trap.
public struct WarmAnswer: Equatable, Sendable {
    public var warmed: Int
    public var alreadyFresh: Int
    public var failed: [MemberFailure]
    public var deferred: [String]

    public init(warmed: Int, alreadyFresh: Int, failed: [MemberFailure] = [], deferred: [String] = []) {
        self.warmed = warmed
        self.alreadyFresh = alreadyFresh
        self.failed = failed
        self.deferred = deferred
    }

    /// ProtoJSON: lowerCamelCase or snake_case names, int32 as numbers or strings, absent = zero.
    init(_ object: JSONObject) {
        func field(_ camel: String, _ snake: String) -> JSONValue? { object[camel] ?? object[snake] }
        func count(_ camel: String, _ snake: String) -> Int {
            guard let value = field(camel, snake)?.int64Value else { return 0 }
            return Int(min(max(0, value), Int64(Int32.max)))
        }
        warmed = count("warmed", "warmed")
        alreadyFresh = count("alreadyFresh", "already_fresh")
        failed = (field("failed", "failed")?.arrayValue ?? []).compactMap { entry in
            guard let entry = entry.objectValue, let member = entry["member"]?.stringValue else { return nil }
            return MemberFailure(member: member, code: entry["code"]?.stringValue ?? "unknown", message: entry["message"]?.stringValue ?? "")
        }
        deferred = (field("deferred", "deferred")?.arrayValue ?? []).compactMap(\.stringValue)
    }
}
