import Codecs
import EventLoop
import Gzip
import HTTPServer
import Logging

/// What a unary method answers: the JSON body and any extra headers (`x-cache`, `age`).
public struct UnaryReply {
    public var body: [UInt8]
    public var headers: [(name: String, value: String)]

    public init(body: [UInt8], headers: [(name: String, value: String)] = []) {
        self.body = body
        self.headers = headers
    }
}

/// What a method may know of its call besides the message.
public struct RPCContext {
    /// When the caller stops waiting, on the loop's monotonic clock (`Loop.monotonicMilliseconds`):
    /// from `connect-timeout-ms`, else the router's default. Waits inside the call end by then.
    public let deadline: Int64
    /// Tells the call when its caller went away (reset the stream, closed the connection);
    /// nil unless the method `observesCancellation`.
    public let cancellation: RPCCancellation?
    private let request: HTTPRequest

    public init(deadline: Int64, request: HTTPRequest, cancellation: RPCCancellation? = nil) {
        self.deadline = deadline
        self.request = request
        self.cancellation = cancellation
    }

    /// A request header (name in lowercase), e.g. `cache-control`.
    public func header(_ name: String) -> String? { request.header(name) }

    /// When a call that answers in parts (a batch) should stop waiting and answer with what it
    /// has: a little before `deadline`, so the reply travels before the caller gives up.
    public func replyDeadline(now: Int64) -> Int64 {
        let left = max(0, deadline - now)
        return deadline - min(250, left / 20)
    }
}

/// The caller of a call went away. Loop-confined.
public final class RPCCancellation {
    public private(set) var isCancelled = false
    /// Runs once, when the caller goes away (not after the call answered).
    public var onCancel: (() -> Void)?

    public init() {}

    func cancel() {
        guard !isCancelled else { return }
        isCancelled = true
        let action = onCancel
        onCancel = nil
        action?()
    }
}

/// One Connect unary method. `call` runs on the loop and answers through `reply` exactly once.
public protocol UnaryMethod: AnyObject {
    /// `/package.Service/Method`
    var path: String { get }
    /// Bounded label for logs and metrics.
    var name: String { get }
    /// `idempotency_level = NO_SIDE_EFFECTS`: also served over Connect GET.
    var hasNoSideEffects: Bool { get }
    /// The deadline of a call that names none; nil = the router's default.
    var defaultTimeoutMilliseconds: Int? { get }
    /// Largest request body; nil = the router's default.
    var maxRequestBodyBytes: Int? { get }
    /// The call wants `RPCContext.cancellation` (a long call that should stop when its caller
    /// goes away); others pay nothing for it.
    var observesCancellation: Bool { get }
    func call(_ request: JSONValue, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void)
}

/// A request message decoded from ProtoJSON; a bad message is `invalid_argument`.
public protocol RPCRequest {
    init(json: JSONValue) throws(RPCError)
}

extension UnaryMethod {
    public var defaultTimeoutMilliseconds: Int? { nil }
    public var maxRequestBodyBytes: Int? { nil }
    public var observesCancellation: Bool { false }

    /// The decoded request, or nil after answering the decoding error through `reply`.
    @inlinable
    public func decode<Request: RPCRequest>(_ message: JSONValue, reply: (Result<UnaryReply, RPCError>) -> Void) -> Request? {
        do {
            return try Request(json: message)
        } catch {
            reply(.failure(error))
            return nil
        }
    }
}

/// Counts one method's outcomes (the application backs it with its metrics). Resolved once per
/// method at start-up, so the hot path does no lookup.
public protocol RPCOutcomeCounter: AnyObject, Sendable {
    func countSuccess()
    func count(_ code: RPCCode)
}

/// A plain HTTP endpoint beside the Connect methods: health, metrics, the webhook.
public struct PlainRoute {
    /// The one HTTP method served; others get 405 with `allow`.
    public var method: String
    /// Largest request body; nil = the router's default.
    public var bodyLimit: Int?
    /// The answer when the request breaks a server limit; nil = the Connect error answer.
    public var limitExceeded: ((HTTPLimitViolation) -> HTTPResponse)?
    /// Answers through `respond` exactly once, now or later on the loop.
    public var handle: (HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Void

    public init(method: String, bodyLimit: Int? = nil, limitExceeded: ((HTTPLimitViolation) -> HTTPResponse)? = nil,
                handle: @escaping (HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Void) {
        self.method = method
        self.bodyLimit = bodyLimit
        self.limitExceeded = limitExceeded
        self.handle = handle
    }

    /// A GET endpoint answered at once.
    public static func get(_ answer: @escaping () -> HTTPResponse) -> PlainRoute {
        PlainRoute(method: "GET", handle: { _, respond in respond(answer()) })
    }
}

/// Routes requests: plain endpoints (health, metrics, webhook) and Connect unary JSON methods,
/// with the protocol's checks: method, content type, protocol version, timeout, compression, GET.
/// Knows nothing of the methods it serves. Loop-confined.
public final class ConnectRouter: HTTPHandler {
    private let loop: Loop
    private let methods: [String: (method: UnaryMethod, counters: RPCOutcomeCounter)]
    private let plainRoutes: [String: PlainRoute]
    /// Routes with their own body limit, checked by plain comparison (there are one or two), so
    /// the RPC hot path pays no extra hash per request.
    private let bodyLimits: [(path: String, limit: Int)]
    private let maxBodyBytes: Int
    /// The deadline of a call that names none: waits inside a call stay bounded.
    private let defaultDeadlineMilliseconds: Int
    /// Counts requests to no known method.
    private let unknownMethod: RPCOutcomeCounter
    private let logger: Logger
    /// Responses smaller than this are not worth gzip's CPU and header.
    private let gzipThreshold = 1024
    private static let supportedEncodings = "gzip, identity"

    /// `counters` gives each method's outcome counter by method name, and `unknownMethod` counts
    /// requests to paths that name no method.
    public init(loop: Loop, methods: [UnaryMethod], plainRoutes: [String: PlainRoute], maxBodyBytes: Int,
                defaultDeadlineMilliseconds: Int = 15_000, counters: (String) -> RPCOutcomeCounter, unknownMethod: RPCOutcomeCounter,
                logger: Logger) {
        self.defaultDeadlineMilliseconds = defaultDeadlineMilliseconds
        self.loop = loop
        self.methods = Dictionary(uniqueKeysWithValues: methods.map { ($0.path, ($0, counters($0.name))) })
        self.plainRoutes = plainRoutes
        bodyLimits = plainRoutes.compactMap { path, route in route.bodyLimit.map { (path, $0) } }
            + methods.compactMap { method in method.maxRequestBodyBytes.map { (method.path, $0) } }
        self.maxBodyBytes = maxBodyBytes
        self.unknownMethod = unknownMethod
        self.logger = logger
    }

    public func requestBodyLimit(method: String, path: String) -> Int {
        for route in bodyLimits where route.path == path { return route.limit }
        return maxBodyBytes
    }

    public func limitExceeded(_ violation: HTTPLimitViolation, method: String, path: String) -> HTTPResponse {
        if let answer = plainRoutes[path]?.limitExceeded { return answer(violation) }
        let error: RPCError
        switch violation {
        case .headerListTooLarge(let limit): error = Self.tooLarge(limit: limit, what: "request headers")
        case .bodyTooLarge(let limit): error = Self.tooLarge(limit: limit, what: "request body")
        }
        (methods[path]?.counters ?? unknownMethod).count(error.code)
        return Self.errorResponse(error)
    }

    private static func tooLarge(limit: Int, what: String) -> RPCError {
        RPCError(.resourceExhausted, "\(what) exceeds \(limit) bytes")
    }

    public func handle(_ request: HTTPRequest, writer: HTTPResponseWriter) {
        loop.assertInLoop()
        // RPCs first: they are the hot path, and each lookup hashes the whole path.
        guard let (method, counters) = methods[request.path] else {
            if let route = plainRoutes[request.path] {
                guard request.method == route.method else {
                    return writer.respond(Self.methodNotAllowed(request.method, allowed: route.method))
                }
                return route.handle(request) { writer.respond($0) }
            }
            unknownMethod.count(.unimplemented)
            var response = Self.errorResponse(RPCError(.unimplemented, "no such method: \(request.path)"))
            response.status = 404
            return writer.respond(response)
        }
        let allowed = method.hasNoSideEffects ? "GET, POST" : "POST"
        guard request.method == "POST" || (request.method == "GET" && method.hasNoSideEffects) else {
            return writer.respond(Self.methodNotAllowed(request.method, allowed: allowed))
        }
        if let unsupported = unsupportedContentType(request) {
            return writer.respond(HTTPResponse(status: 415, headers: [("accept-post", "application/json"), ("content-type", "application/json")],
                                                  body: RPCError(.unimplemented, unsupported).jsonBody()))
        }
        let deadline: Int?
        let message: JSONValue
        do {
            deadline = try Self.deadline(request)
            message = try decodeMessage(request)
        } catch {
            return finish(method, counters, .failure(error), acceptsGzip: false, responder: writer)
        }
        let acceptsGzip = request.header("accept-encoding").map(ConnectUnary.acceptsGzip) ?? false
        // Strong captures: the timer is cancelled (dropping its closure) as soon as the call
        // answers or the stream ends, so nothing outlives the request.
        var deadlineTimer: Timer?
        if let deadline {
            do {
                deadlineTimer = try Timer.schedule(on: loop, after: deadline) { [self] in
                    self.finish(method, counters, .failure(RPCError(.deadlineExceeded, "the call's deadline of \(deadline) ms was exceeded")),
                                acceptsGzip: false, responder: writer)
                }
            } catch {
                logger.error("could not arm a deadline timer", metadata: ["error": "\(error)"])
            }
        }
        let cancellation = method.observesCancellation ? RPCCancellation() : nil
        if deadlineTimer != nil || cancellation != nil {
            writer.onCancel = { [deadlineTimer, cancellation] in
                deadlineTimer?.cancel()
                cancellation?.cancel()
            }
        }
        let context = RPCContext(deadline: loop.monotonicMilliseconds + Int64(deadline ?? method.defaultTimeoutMilliseconds ?? defaultDeadlineMilliseconds),
                                 request: request, cancellation: cancellation)
        method.call(message, context: context) { [self, deadlineTimer] result in
            deadlineTimer?.cancel()
            self.finish(method, counters, result, acceptsGzip: acceptsGzip, responder: writer)
        }
    }

    private func finish(_ method: UnaryMethod, _ counters: RPCOutcomeCounter, _ result: Result<UnaryReply, RPCError>, acceptsGzip: Bool,
                        responder: HTTPResponseWriter) {
        guard !responder.hasResponded, !responder.isCancelled else { return }
        switch result {
        case .success(let reply):
            counters.countSuccess()
            var headers: [(name: String, value: String)] = []
            headers.reserveCapacity(reply.headers.count + 2)
            headers.append(("content-type", "application/json"))
            headers.append(contentsOf: reply.headers)
            var body = reply.body
            if acceptsGzip, body.count >= gzipThreshold {
                body = Gzip.compress(body)
                headers.append(("content-encoding", "gzip"))
            }
            responder.respond(HTTPResponse(status: 200, headers: headers, body: body))
        case .failure(let error):
            counters.count(error.code)
            if error.code == .internal {
                logger.error("request failed", metadata: ["method": "\(method.name)", "error": "\(error.message)"])
            }
            responder.respond(Self.errorResponse(error))
        }
    }

    // MARK: Connect protocol checks

    private func unsupportedContentType(_ request: HTTPRequest) -> String? {
        if request.method == "GET" {
            return request.body.isEmpty ? nil : "a Connect GET request carries no body"
        }
        let contentType = request.header("content-type") ?? ""
        return ConnectUnary.isJSONContentType(contentType) ? nil
            : "content-type \"\(contentType)\" is not supported; use application/json"
    }

    private static func deadline(_ request: HTTPRequest) throws(RPCError) -> Int? {
        if let version = request.header("connect-protocol-version"), version != "1" {
            throw RPCError(.invalidArgument, "connect-protocol-version must be 1, got \"\(version)\"")
        }
        guard let raw = request.header("connect-timeout-ms") else { return nil }
        guard let milliseconds = ConnectUnary.parseTimeoutMilliseconds(raw) else {
            throw RPCError(.invalidArgument, "connect-timeout-ms must be 1 to 10 digits, got \"\(raw)\"")
        }
        return milliseconds
    }

    private func decodeMessage(_ request: HTTPRequest) throws(RPCError) -> JSONValue {
        var bytes: [UInt8]
        let encoding: String?
        if request.method == "GET" {
            let query = try ConnectUnary.parseGetQuery(request.query ?? "")
            bytes = query.message
            encoding = query.compression
        } else {
            bytes = request.body
            encoding = request.header("content-encoding")
        }
        switch encoding?.lowercased() {
        case nil, "", "identity":
            break
        case "gzip":
            // An empty body is the empty message, never a gzip stream (protocol rule).
            if !bytes.isEmpty {
                do {
                    bytes = try Gzip.decompress(bytes, limit: maxBodyBytes)
                } catch .tooLarge(let limit) {
                    throw Self.tooLarge(limit: limit, what: "decompressed request body")
                } catch {
                    throw RPCError(.invalidArgument, "request body is not valid gzip")
                }
            }
        case let other?:
            throw RPCError(.unimplemented, "compression \"\(other)\" is not supported; supported: \(Self.supportedEncodings)")
        }
        if bytes.isEmpty { return .object(JSONObject(members: [])) }
        return try JSONParser.parseRequest(bytes)
    }

    private static func methodNotAllowed(_ method: String, allowed: String) -> HTTPResponse {
        HTTPResponse(status: 405, headers: [("allow", allowed), ("content-type", "application/json")],
                     body: RPCError(.unimplemented, "\(method) is not allowed; use \(allowed)").jsonBody())
    }

    public static func errorResponse(_ error: RPCError) -> HTTPResponse {
        var headers = [("content-type", "application/json")]
        if let seconds = error.retryAfterSeconds { headers.append(("retry-after", String(seconds))) }
        return HTTPResponse(status: error.code.httpStatus, headers: headers, body: error.jsonBody())
    }
}
