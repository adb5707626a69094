import Glibc
import HTTPServer
import Logging

/// How a request was carried: the `protocol` of logs and metrics.
public enum RequestProtocol: Int, CaseIterable, Sendable {
    case connect
    case grpc
    case grpcWeb
    /// A plain endpoint (health, metrics, webhook), or a request refused before any RPC protocol
    /// was chosen (405, 415, 505).
    case http

    public var label: String {
        switch self {
        case .connect: "connect"
        case .grpc: "grpc"
        case .grpcWeb: "grpc_web"
        case .http: "http"
        }
    }
}

/// How a request ended, as logs and metrics count it.
public enum RequestOutcome: Equatable, Sendable {
    /// An RPC answered in its protocol: nil is ok, else the error's code (`canceled` when the
    /// caller went away first).
    case rpc(RPCCode?)
    /// A plain HTTP answer, or a refusal before any RPC protocol was chosen; 499 when the caller
    /// went away first.
    case http(status: Int)
}

/// Why the router itself refused a request before any method or endpoint saw it.
public enum RouterRefusal: Int, CaseIterable, Sendable {
    /// 405: an HTTP method the route does not serve.
    case methodNotAllowed
    /// 415: no content type an RPC protocol here speaks.
    case unsupportedMediaType
    /// 505: gRPC over HTTP/1.1.
    case httpVersionNotSupported

    public var label: String {
        switch self {
        case .methodNotAllowed: "method_not_allowed"
        case .unsupportedMediaType: "unsupported_media_type"
        case .httpVersionNotSupported: "http_version_not_supported"
        }
    }
}

/// One route's counts (the application backs it with its metrics). Resolved for every route
/// when the router is built, so a request does no lookup to count itself.
public protocol RouteMetrics: AnyObject, Sendable {
    /// A request to this route was answered; `seconds` from its headers' arrival, nil when unknown
    /// (the server answered a broken limit before the router saw a request).
    func answered(over carrier: RequestProtocol, _ outcome: RequestOutcome, seconds: Double?)
}

/// What the router reports to the application's metrics.
public protocol RouterMetrics: AnyObject, Sendable {
    /// The counts of an RPC method, by its `name`.
    func method(_ name: String) -> RouteMetrics
    /// The counts of a plain endpoint, by its path.
    func endpoint(_ path: String) -> RouteMetrics
    /// The counts of requests to paths that name no route.
    var unknownRoute: RouteMetrics { get }
    func refused(_ reason: RouterRefusal)
}

/// What the access line of one request says, and where its answer goes. The router makes one per
/// request; a method notes its cache result and Voucherify calls here (`RPCContext.record`).
/// Loop-confined.
public final class RequestRecord {
    /// How a cache served the request: hit, miss, stale or negative (the application's words);
    /// `mixed` for a call of several members served differently; nil when no cache was asked.
    public private(set) var cacheResult: String?
    /// Voucherify calls this request caused (joining another caller's read causes none).
    public var upstreamReads = 0
    /// `x-request-id`: the caller's, or one made up here; echoed on the answer.
    public let requestID: String
    /// How the request is carried, once the router knows.
    var carrier = RequestProtocol.http
    private let routeName: String
    private let metrics: RouteMetrics?
    private let log: AccessLog?
    private let startNanoseconds: Int64
    private let version: HTTPVersion
    private let peer: String
    /// Shown for requests to no route only: any other path is the route's name.
    private let unknownPath: String?
    private var finished = false

    /// A record that reports nowhere (for calls made outside a router, as in tests).
    public convenience init() {
        self.init(requestID: "", routeName: "", metrics: nil, log: nil, startNanoseconds: 0, version: .http2, peer: "", unknownPath: nil)
    }

    init(requestID: String, routeName: String, metrics: RouteMetrics?, log: AccessLog?, startNanoseconds: Int64, version: HTTPVersion,
         peer: String, unknownPath: String?) {
        self.requestID = requestID
        self.routeName = routeName
        self.metrics = metrics
        self.log = log
        self.startNanoseconds = startNanoseconds
        self.version = version
        self.peer = peer
        self.unknownPath = unknownPath
    }

    /// Notes how the cache served one member; a batch notes each of its members.
    public func noteCacheResult(_ result: String) {
        cacheResult = cacheResult == nil || cacheResult == result ? result : "mixed"
    }

    /// Sends `response` with `x-request-id`, then counts and logs the request. Nothing happens
    /// once the request was answered or its caller went away.
    func answer(_ response: HTTPResponse, _ outcome: RequestOutcome, writer: HTTPResponseWriter) {
        guard !writer.hasResponded, !writer.isCancelled else { return }
        var response = response
        response.headers.append(("x-request-id", requestID))
        writer.respond(response)
        finish(status: response.status, outcome)
    }

    /// The caller went away before its answer.
    func cancelled() {
        finish(status: nil, carrier == .http ? .http(status: 499) : .rpc(.canceled))
    }

    private func finish(status: Int?, _ outcome: RequestOutcome) {
        guard !finished else { return }
        finished = true
        let nanoseconds = max(0, MonotonicClock.nanoseconds() - startNanoseconds)
        metrics?.answered(over: carrier, outcome, seconds: Double(nanoseconds) / 1e9)
        log?.write(self, status: status, outcome: outcome, nanoseconds: nanoseconds)
    }

    fileprivate var metadata: (route: String, version: HTTPVersion, peer: String, unknownPath: String?) {
        (routeName, version, peer, unknownPath)
    }
}

/// The router's access log: one `info` line per request, with its fields as swift-log metadata
/// (a JSON log handler makes them fields). Never bodies, credentials or signatures: only what
/// is listed here. Loop-confined.
final class AccessLog {
    let logger: Logger
    /// Request ids need to be unique, not secret: a random half drawn once per router (one per
    /// loop), then a count.
    private let idPrefix = UInt64.random(in: .min ... .max)
    private var idCount: UInt64 = 0

    init(logger: Logger) {
        self.logger = logger
    }

    /// The caller's `x-request-id` when it is 1 to 128 visible ASCII characters, else 32 new hex digits.
    func requestID(_ request: HTTPRequest) -> String {
        if let given = request.header("x-request-id"), Self.isAcceptable(given) { return given }
        return newRequestID()
    }

    static func isAcceptable(_ id: String) -> Bool {
        let utf8 = id.utf8
        return (1...128).contains(utf8.count) && utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    func newRequestID() -> String {
        idCount &+= 1
        let (high, low) = (idPrefix, idCount)
        return String(unsafeUninitializedCapacity: 32) { buffer in
            for index in 0..<32 {
                let word = index < 16 ? high : low
                let nibble = UInt8(truncatingIfNeeded: word >> UInt64((15 - index % 16) * 4)) & 0xF
                buffer[index] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
            }
            return 32
        }
    }

    /// A request the server refused (a broken limit) before the router saw it whole: counted and
    /// logged with what is known, and answered with a new request id.
    func limitAnswer(_ response: HTTPResponse, _ outcome: RequestOutcome, over carrier: RequestProtocol, route: String, metrics: RouteMetrics,
                     version: HTTPVersion, unknownPath: String?) -> HTTPResponse {
        let record = RequestRecord(requestID: newRequestID(), routeName: route, metrics: nil, log: nil, startNanoseconds: 0, version: version,
                                   peer: "", unknownPath: unknownPath)
        record.carrier = carrier
        metrics.answered(over: carrier, outcome, seconds: nil)
        write(record, status: response.status, outcome: outcome, nanoseconds: nil)
        var response = response
        response.headers.append(("x-request-id", record.requestID))
        return response
    }

    fileprivate func write(_ record: RequestRecord, status: Int?, outcome: RequestOutcome, nanoseconds: Int64?) {
        logger.info("request", metadata: Self.fields(record, status: status, outcome: outcome, nanoseconds: nanoseconds))
    }

    static func fields(_ record: RequestRecord, status: Int?, outcome: RequestOutcome, nanoseconds: Int64?) -> Logger.Metadata {
        let (route, version, peer, unknownPath) = record.metadata
        var fields: Logger.Metadata = [
            "request_id": .string(record.requestID),
            "method": .string(route),
            "protocol": .string(record.carrier.label),
            "http_version": .string(version == .http2 ? "2" : "1.1"),
        ]
        if let status { fields["status"] = .stringConvertible(status) }
        if case .rpc(let code) = outcome { fields["code"] = .string(code?.rawValue ?? "ok") }
        if let nanoseconds { fields["duration_ms"] = .string(Self.milliseconds(nanoseconds)) }
        if let cache = record.cacheResult { fields["cache"] = .string(cache) }
        if record.carrier != .http { fields["upstream_reads"] = .stringConvertible(record.upstreamReads) }
        if !peer.isEmpty { fields["peer"] = .string(peer) }
        // A path of no route is the caller's text: bounded, so a log line stays a line.
        if let unknownPath { fields["path"] = .string(String(decoding: unknownPath.utf8.prefix(200), as: UTF8.self)) }
        return fields
    }

    /// `12.345`: milliseconds with three decimals.
    static func milliseconds(_ nanoseconds: Int64) -> String {
        let micros = nanoseconds / 1000
        let fraction = String(micros % 1000)
        return "\(micros / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `Loop.monotonicMilliseconds`, finer, for durations.
enum MonotonicClock {
    static func nanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
