import Codecs
import EventLoop
import Gzip
import HTTPServer
import Logging
import SwiftProtobuf

/// What a unary method answers: the response message in the call's codec (`RPCContext.codec`)
/// and any extra headers (`x-cache`, `age`; gRPC sends them as initial metadata).
public struct UnaryReply {
    public var body: [UInt8]
    public var headers: [(name: String, value: String)]
    /// Where a cached answer keeps its compressed form, when the caller asks for gzip.
    public var gzipMemo: GzipMemo?

    public init(body: [UInt8], headers: [(name: String, value: String)] = [], gzipMemo: GzipMemo? = nil) {
        self.body = body
        self.headers = headers
        self.gzipMemo = gzipMemo
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
    /// The codec the reply's body must be written in (the request's).
    public let codec: MessageCodec
    /// The request's access-log record: where a method notes its cache result and upstream reads.
    public let record: RequestRecord
    private let request: HTTPRequest

    public init(deadline: Int64, request: HTTPRequest, codec: MessageCodec = .json, cancellation: RPCCancellation? = nil,
                record: RequestRecord = RequestRecord()) {
        self.deadline = deadline
        self.request = request
        self.codec = codec
        self.cancellation = cancellation
        self.record = record
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

/// One unary method, whatever protocol (Connect, gRPC, gRPC-Web) and codec carries it. `call` runs on the loop and answers through `reply` exactly once.
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
    func call(_ request: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void)
}

/// A request checked beyond what its generated message type can say (required fields, lengths);
/// a bad one is `invalid_argument`.
public protocol RPCRequest {
    associatedtype Message: SwiftProtobuf.Message
    /// The JSON form in a few words, for callers whose message did not decode.
    static var jsonShape: String { get }
    init(message: Message) throws(RPCError)
    /// The request from either codec; by default `decodeGenerated`. A request on the hit path may
    /// read JSON by hand where that measured cheaper, tested to agree with the generated decoder.
    static func decode(_ message: RPCMessage) throws(RPCError) -> Self
}

extension UnaryMethod {
    public var defaultTimeoutMilliseconds: Int? { nil }
    public var maxRequestBodyBytes: Int? { nil }
    public var observesCancellation: Bool { false }

    /// The decoded request, or nil after answering the decoding error through `reply`.
    @inlinable
    public func decode<Request: RPCRequest>(_ message: RPCMessage, reply: (Result<UnaryReply, RPCError>) -> Void) -> Request? {
        do {
            return try Request.decode(message)
        } catch {
            reply(.failure(error))
            return nil
        }
    }
}

extension RPCRequest {
    public static func decode(_ message: RPCMessage) throws(RPCError) -> Self {
        try decodeGenerated(message)
    }

    /// The message decoded by its generated type, whose errors are completed by `jsonShape` (the
    /// generated decoder cannot say which field is wrong), then checked.
    public static func decodeGenerated(_ message: RPCMessage) throws(RPCError) -> Self {
        let decoded: Message
        do {
            decoded = try message.decode(Message.self)
        } catch {
            guard message.codec == .json else { throw error }
            throw RPCError(error.code, "\(error.message); expected \(jsonShape)")
        }
        return try Self(message: decoded)
    }
}

/// A call's deadline timer, shared by what ends the call (its answer, its caller going away) and
/// set once the call is still unanswered after `UnaryMethod.call` returned. Loop-confined.
private final class CallTimer {
    var timer: Timer?

    /// Disarms it; the timer itself stays (this may run inside its own action).
    func cancel() { timer?.cancel() }
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

/// Routes requests: plain endpoints (health, metrics, webhook) and unary methods over Connect
/// (JSON and proto, POST and GET), gRPC and gRPC-Web, chosen by content type, with each
/// protocol's checks: method, content type, version, deadline, compression, framing.
/// Knows nothing of the methods it serves. Loop-confined.
public final class RPCRouter: HTTPHandler {
    private let loop: Loop
    /// Found by comparing paths (a handful of methods): a request hashes no path to find its method.
    private let methods: [(path: String, method: UnaryMethod, metrics: RouteMetrics)]
    private let plainRoutes: [String: (route: PlainRoute, metrics: RouteMetrics)]
    /// Routes with their own body limit, checked by plain comparison (there are one or two), so
    /// the RPC hot path pays no extra hash per request.
    private let bodyLimits: [(path: String, limit: Int)]
    private let maxBodyBytes: Int
    /// The deadline of a call that names none: waits inside a call stay bounded.
    private let defaultDeadlineMilliseconds: Int
    private let metrics: RouterMetrics
    private let unknownRoute: RouteMetrics
    private let accessLog: AccessLog
    private var logger: Logger { accessLog.logger }
    /// Responses smaller than this are not worth gzip's CPU and header.
    private let gzipThreshold = 1024
    private static let supportedEncodings = "gzip, identity"

    /// `metrics` counts every request by route (each route's counts resolved here, once);
    /// `logger` gets one access line per request at `info`.
    public init(loop: Loop, methods: [UnaryMethod], plainRoutes: [String: PlainRoute], maxBodyBytes: Int,
                defaultDeadlineMilliseconds: Int = 15_000, metrics: RouterMetrics, logger: Logger) {
        self.defaultDeadlineMilliseconds = defaultDeadlineMilliseconds
        self.loop = loop
        precondition(Set(methods.map(\.path)).count == methods.count, "two methods share a path")
        self.methods = methods.map { ($0.path, $0, metrics.method($0.name)) }
        self.plainRoutes = Dictionary(uniqueKeysWithValues: plainRoutes.map { path, route in (path, (route, metrics.endpoint(path))) })
        bodyLimits = plainRoutes.compactMap { path, route in route.bodyLimit.map { (path, $0) } }
            + methods.compactMap { method in method.maxRequestBodyBytes.map { (method.path, $0) } }
        self.maxBodyBytes = maxBodyBytes
        self.metrics = metrics
        unknownRoute = metrics.unknownRoute
        accessLog = AccessLog(logger: logger)
    }

    /// The whole body's limit, whatever the protocol (a gRPC message gets 5 bytes less, for its prefix).
    public func requestBodyLimit(method: String, path: String) -> Int {
        for route in bodyLimits where route.path == path { return route.limit }
        return maxBodyBytes
    }

    public func limitExceeded(_ violation: HTTPLimitViolation, version: HTTPVersion, method: String, path: String, contentType: String?) -> HTTPResponse {
        loop.assertInLoop()
        if let (route, routeMetrics) = plainRoutes[path] {
            let answer = route.limitExceeded?(violation) ?? Self.errorResponse(Self.limitError(violation))
            return accessLog.limitAnswer(answer, .http(status: answer.status), over: .http, route: path, metrics: routeMetrics, version: version,
                                         unknownPath: nil)
        }
        let error = Self.limitError(violation)
        let found = unaryMethod(at: path)
        let (name, routeMetrics) = found.map { ($0.method.name, $0.metrics) } ?? ("unknown", unknownRoute)
        let unknownPath = found == nil ? path : nil
        if let call = contentType.flatMap(CallShape.init(contentType:)), call.wire != .connect {
            if call.needsHTTP2(over: version) {
                metrics.refused(.httpVersionNotSupported)
                return accessLog.limitAnswer(Self.grpcNeedsHTTP2, .http(status: 505), over: .http, route: name, metrics: routeMetrics,
                                             version: version, unknownPath: unknownPath)
            }
            return accessLog.limitAnswer(call.errorResponse(error), .rpc(error.code), over: call.carrier, route: name, metrics: routeMetrics,
                                         version: version, unknownPath: unknownPath)
        }
        return accessLog.limitAnswer(Self.errorResponse(error), .rpc(error.code), over: .connect, route: name, metrics: routeMetrics,
                                     version: version, unknownPath: unknownPath)
    }

    private static func limitError(_ violation: HTTPLimitViolation) -> RPCError {
        switch violation {
        case .headerListTooLarge(let limit): tooLarge(limit: limit, what: "request headers")
        case .bodyTooLarge(let limit): tooLarge(limit: limit, what: "request body")
        case .serverBusy: RPCError(.unavailable, "the server is holding as many request bytes as it may; retry shortly")
        case .requestTimeout(let seconds): RPCError(.deadlineExceeded, "the request did not arrive whole within \(seconds) s")
        }
    }

    private static func tooLarge(limit: Int, what: String) -> RPCError {
        RPCError(.resourceExhausted, "\(what) exceeds \(limit) bytes")
    }

    public func handle(_ request: HTTPRequest, writer: HTTPResponseWriter) {
        loop.assertInLoop()
        let started = Self.start(of: request)
        // RPCs first: they are the hot path.
        guard let (method, routeMetrics) = unaryMethod(at: request.path) else {
            return handleOther(request, started: started, writer: writer)
        }
        let record = RequestRecord(requestID: accessLog.requestID(request), routeName: method.name, metrics: routeMetrics, log: accessLog,
                                   startNanoseconds: started.nanoseconds, version: request.version, peer: request.peer, unknownPath: nil)
        let allowed = method.hasNoSideEffects ? "GET, POST" : "POST"
        guard request.method == "POST" || (request.method == "GET" && method.hasNoSideEffects) else {
            metrics.refused(.methodNotAllowed)
            return record.answer(Self.methodNotAllowed(request.method, allowed: allowed), .http(status: 405), writer: writer)
        }
        let call: CallShape
        switch CallShape.of(request) {
        case .call(let shape):
            call = shape
        case .unsupported(let problem):
            metrics.refused(.unsupportedMediaType)
            return record.answer(Self.unsupportedMediaType(problem), .http(status: 415), writer: writer)
        }
        if call.needsHTTP2(over: request.version) {
            metrics.refused(.httpVersionNotSupported)
            return record.answer(Self.grpcNeedsHTTP2, .http(status: 505), writer: writer)
        }
        record.carrier = call.carrier
        let deadline: Int?
        let message: RPCMessage
        do {
            deadline = try call.deadline(request)
            message = try requestMessage(request, call: call)
        } catch {
            return finish(method, record, .failure(error), call: call, codec: .json, compressResponse: false, writer: writer)
        }
        let compressResponse = call.acceptsGzipResponse(request)
        // The caller's deadline runs from when its headers arrived, however slowly the body came.
        let deadlineAt = started.milliseconds + Int64(deadline ?? method.defaultTimeoutMilliseconds ?? defaultDeadlineMilliseconds)
        // Strong captures: the timer is cancelled (dropping its closure) as soon as the call
        // answers or the stream ends, so nothing outlives the request.
        let cancellation = method.observesCancellation ? RPCCancellation() : nil
        // Only a caller's own deadline gets a timer, and only once the method returned without
        // answering: a hit answered within `call` (the in-process tier) arms none.
        let deadlineTimer = deadline == nil ? nil : CallTimer()
        writer.onCancel = { [deadlineTimer, cancellation] in
            deadlineTimer?.cancel()
            cancellation?.cancel()
            record.cancelled()
        }
        let context = RPCContext(deadline: deadlineAt, request: request, codec: message.codec, cancellation: cancellation, record: record)
        method.call(message, context: context) { [self, deadlineTimer] result in
            deadlineTimer?.cancel()
            self.finish(method, record, result, call: call, codec: message.codec, compressResponse: compressResponse, writer: writer)
        }
        guard let deadline, let deadlineTimer, !writer.hasResponded, !writer.isCancelled else { return }
        do {
            deadlineTimer.timer = try Timer.schedule(on: loop, after: Int(clamping: max(0, deadlineAt - loop.monotonicMilliseconds))) { [self] in
                // The caller has its answer: a call that watches for its caller stops too.
                cancellation?.cancel()
                self.finish(method, record, .failure(RPCError(.deadlineExceeded, "the call's deadline of \(deadline) ms was exceeded")),
                            call: call, codec: message.codec, compressResponse: false, writer: writer)
            }
        } catch {
            logger.error("could not arm a deadline timer", metadata: ["error": "\(error)", "request_id": "\(record.requestID)"])
        }
    }

    private func unaryMethod(at path: String) -> (method: UnaryMethod, metrics: RouteMetrics)? {
        for entry in methods where entry.path == path { return (entry.method, entry.metrics) }
        return nil
    }

    /// Where a request's deadline and logged duration start: when its headers arrived. A request
    /// whose body came within a millisecond starts here instead, on the finer clock (the
    /// millisecond arrival stamp would add up to a millisecond to every fast request).
    private static func start(of request: HTTPRequest) -> (milliseconds: Int64, nanoseconds: Int64) {
        let now = MonotonicClock.nanoseconds()
        let nowMilliseconds = now / 1_000_000
        guard request.headersArrivedAt > 0, nowMilliseconds - request.headersArrivedAt >= 2 else { return (nowMilliseconds, now) }
        return (request.headersArrivedAt, request.headersArrivedAt * 1_000_000)
    }

    /// Plain endpoints, and paths that name no method (answered in the caller's protocol, so a
    /// gRPC client shows UNIMPLEMENTED rather than an HTTP status).
    private func handleOther(_ request: HTTPRequest, started: (milliseconds: Int64, nanoseconds: Int64), writer: HTTPResponseWriter) {
        let plain = plainRoutes[request.path]
        let record = RequestRecord(requestID: accessLog.requestID(request), routeName: plain == nil ? "unknown" : request.path,
                                   metrics: plain?.metrics ?? unknownRoute, log: accessLog, startNanoseconds: started.nanoseconds,
                                   version: request.version, peer: request.peer, unknownPath: plain == nil ? request.path : nil)
        if let (route, _) = plain {
            // HEAD is GET without the body (RFC 9110 §9.3.2); the server leaves the body out.
            let isHeadOfGet = route.method == "GET" && request.method == "HEAD"
            guard request.method == route.method || isHeadOfGet else {
                metrics.refused(.methodNotAllowed)
                let allowed = route.method == "GET" ? "GET, HEAD" : route.method
                return record.answer(Self.methodNotAllowed(request.method, allowed: allowed), .http(status: 405), writer: writer)
            }
            writer.onCancel = { record.cancelled() }
            return route.handle(request) { record.answer($0, .http(status: $0.status), writer: writer) }
        }
        let error = RPCError(.unimplemented, "no such method: \(request.path)")
        if case .call(let call) = CallShape.of(request), call.wire != .connect {
            if call.needsHTTP2(over: request.version) {
                metrics.refused(.httpVersionNotSupported)
                return record.answer(Self.grpcNeedsHTTP2, .http(status: 505), writer: writer)
            }
            record.carrier = call.carrier
            return record.answer(call.errorResponse(error), .rpc(error.code), writer: writer)
        }
        record.carrier = .connect
        var response = Self.errorResponse(error)
        response.status = 404
        record.answer(response, .rpc(error.code), writer: writer)
    }

    private func finish(_ method: UnaryMethod, _ record: RequestRecord, _ result: Result<UnaryReply, RPCError>, call: CallShape,
                        codec: MessageCodec, compressResponse: Bool, writer: HTTPResponseWriter) {
        guard !writer.hasResponded, !writer.isCancelled else { return }
        switch result {
        case .success(let reply):
            var body = reply.body
            let compressed = compressResponse && body.count >= gzipThreshold
            if compressed { body = reply.gzipMemo?.compressed(body) ?? Gzip.compress(body) }
            record.answer(call.successResponse(body, codec: codec, headers: reply.headers, compressed: compressed), .rpc(nil), writer: writer)
        case .failure(let error):
            if error.code == .internal {
                logger.error("request failed", metadata: ["method": "\(method.name)", "error": "\(error.message)", "request_id": "\(record.requestID)"])
            }
            record.answer(call.wire == .connect ? Self.errorResponse(error) : call.errorResponse(error), .rpc(error.code), writer: writer)
        }
    }

    // MARK: request messages

    /// The request message: from the body or a Connect GET query, unframed (gRPC) and decompressed.
    private func requestMessage(_ request: HTTPRequest, call: CallShape) throws(RPCError) -> RPCMessage {
        // A decompressed message gets the method's own limit, as a plain one does (looked up only
        // when needed: the plain JSON hit skips it).
        let limit = { self.requestBodyLimit(method: request.method, path: request.path) }
        switch call.wire {
        case .connect:
            if request.method == "GET" {
                guard request.body.isEmpty else { throw RPCError(.invalidArgument, "a Connect GET request carries no body") }
                let query = try ConnectUnary.parseGetQuery(request.query ?? "")
                return RPCMessage(codec: query.codec, bytes: try decompress(query.message, encoding: query.compression, limit: limit))
            }
            // A POST's shape always has a codec: its content type named it.
            return RPCMessage(codec: call.codec ?? .json, bytes: try decompress(request.body, encoding: request.header("content-encoding"), limit: limit))
        case .grpc, .grpcWeb:
            guard let codec = call.codec else {
                throw RPCError(.unimplemented, "content-type \"\(call.contentType)\" names a codec this server does not speak; use proto or json")
            }
            let (compressed, payload) = try GRPCWire.unaryMessage(request.body, limit: limit())
            guard compressed else { return RPCMessage(codec: codec, bytes: payload) }
            guard let encoding = request.header("grpc-encoding"), encoding.lowercased() != "identity" else {
                throw RPCError(.internal, "the message is flagged compressed but grpc-encoding names no compression")
            }
            return RPCMessage(codec: codec, bytes: try decompress(payload, encoding: encoding, limit: limit))
        }
    }

    private func decompress(_ bytes: [UInt8], encoding: String?, limit: () -> Int) throws(RPCError) -> [UInt8] {
        switch encoding?.lowercased() {
        case nil, "", "identity":
            return bytes
        case "gzip":
            // An empty body is the empty message, never a gzip stream (protocol rule).
            guard !bytes.isEmpty else { return bytes }
            do {
                return try Gzip.decompress(bytes, limit: limit())
            } catch .tooLarge(let limit) {
                throw Self.tooLarge(limit: limit, what: "decompressed request message")
            } catch {
                throw RPCError(.invalidArgument, "the request message is not valid gzip")
            }
        case let other?:
            throw RPCError(.unimplemented, "compression \"\(other)\" is not supported; supported: \(Self.supportedEncodings)")
        }
    }

    // MARK: responses the router writes itself

    private static func unsupportedMediaType(_ problem: String) -> HTTPResponse {
        HTTPResponse(status: 415, headers: [("accept-post", "application/json, application/proto, application/grpc, application/grpc-web"),
                                            ("content-type", "application/json")],
                     body: RPCError(.unimplemented, problem).jsonBody())
    }

    private static let grpcNeedsHTTP2 = HTTPResponse(
        status: 505, headers: [("content-type", "text/plain")],
        body: Array("gRPC needs HTTP/2: use h2c (cleartext HTTP/2 with prior knowledge), or TLS with ALPN h2\n".utf8))

    private static func methodNotAllowed(_ method: String, allowed: String) -> HTTPResponse {
        HTTPResponse(status: 405, headers: [("allow", allowed), ("content-type", "application/json")],
                     body: RPCError(.unimplemented, "\(method) is not allowed; use \(allowed)").jsonBody())
    }

    /// A Connect error: the Connect status mapping and the error JSON.
    public static func errorResponse(_ error: RPCError) -> HTTPResponse {
        var headers = [("content-type", "application/json")]
        if let seconds = error.retryAfterSeconds { headers.append(("retry-after", String(seconds))) }
        return HTTPResponse(status: error.code.httpStatus, headers: headers, body: error.jsonBody())
    }
}
