import Glibc

/// The HTTP version a request arrived over; some protocols need HTTP/2 (gRPC's trailers).
public enum HTTPVersion: Sendable, Equatable {
    case http1_1
    case http2
}

/// A complete request as the server hands it to a handler, whatever the HTTP version.
public struct HTTPRequest: Sendable {
    public let version: HTTPVersion
    public let method: String
    /// The request target's path, up to `?`, not decoded.
    public let path: String
    /// What follows `?`, not decoded; nil when there is none.
    public let query: String?
    /// Regular header fields as received; names are lowercase (HTTP/1.1 ones lowercased on arrival).
    public let headers: HTTPHeaders
    public let body: [UInt8]
    /// The peer's address, `ip:port` (`[v6]:port`), for logs; empty when unknown.
    public let peer: String
    /// When the request's headers had arrived, on `Loop.monotonicMilliseconds`: where the
    /// caller's deadline and the logged duration start, however slowly the body came. 0: unknown
    /// (the handler then takes the moment it is called).
    public let headersArrivedAt: Int64

    public init(version: HTTPVersion, method: String, path: String, query: String? = nil, headers: HTTPHeaders = HTTPHeaders(),
                body: [UInt8] = [], peer: String = "", headersArrivedAt: Int64 = 0) {
        self.peer = peer
        self.headersArrivedAt = headersArrivedAt
        self.version = version
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by lowercase name.
    public func header(_ name: String) -> String? { headers.first(named: name) }
}

/// Header fields packed into one byte buffer (name length, value length, name, value), so
/// receiving a request makes no String per field; values are decoded only when asked for.
/// A length below 128 takes one byte (nearly every field); a longer one takes four, with the
/// top bit set, so no limit configuration can make a length wrap.
public struct HTTPHeaders: Sendable {
    private(set) var bytes: [UInt8] = []

    public init() { bytes.reserveCapacity(256) }

    public init(_ fields: [(name: String, value: String)]) {
        self.init()
        for field in fields { append(name: field.name, value: field.value) }
    }

    public mutating func append(name: String, value: String) {
        var name = name
        var value = value
        name.withUTF8 { name in value.withUTF8 { value in append(name: name, value: value) } }
    }

    mutating func append(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        appendLength(name.count)
        appendLength(value.count)
        bytes.append(contentsOf: name)
        bytes.append(contentsOf: value)
    }

    @inline(__always)
    private mutating func appendLength(_ length: Int) {
        if length < 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: length))
            return
        }
        let value = UInt32(clamping: min(length, Int(Int32.max)))
        bytes.append(UInt8(truncatingIfNeeded: value >> 24) | 0x80)
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    mutating func removeAll() { bytes.removeAll() }

    /// The first value of a header, by exact (lowercase) name.
    public func first(named name: String) -> String? {
        var name = name
        return name.withUTF8 { wanted in
            bytes.withUnsafeBufferPointer { bytes in
                var offset = 0
                while offset < bytes.count {
                    let nameLength = Self.readLength(bytes, &offset)
                    let valueLength = Self.readLength(bytes, &offset)
                    let valueStart = offset + nameLength
                    if nameLength == wanted.count, memcmp(bytes.baseAddress! + offset, wanted.baseAddress!, nameLength) == 0 {
                        return String(decoding: UnsafeBufferPointer(rebasing: bytes[valueStart..<(valueStart + valueLength)]), as: UTF8.self)
                    }
                    offset = valueStart + valueLength
                }
                return nil
            }
        }
    }

    @inline(__always)
    private static func readLength(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: inout Int) -> Int {
        let first = bytes[offset]
        guard first & 0x80 != 0 else {
            offset += 1
            return Int(first)
        }
        let length = Int(first & 0x7F) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        offset += 4
        return length
    }
}

/// A whole response: status and headers, body, then trailers (sent after the body, as gRPC
/// needs for its status).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Trailer fields; empty means none are sent.
    public var trailers: [(name: String, value: String)]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
                trailers: [(name: String, value: String)] = []) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }
}

/// Where a handler sends its answer: one writer per request, whatever the connection type
/// (HTTP/2 or HTTP/1.1), or an in-memory one in tests. Loop-confined.
public protocol HTTPResponseWriter: AnyObject {
    /// True once the peer reset the stream or the connection went away; a response is then dropped.
    var isCancelled: Bool { get }
    /// True once a response was given.
    var hasResponded: Bool { get }
    /// Runs once if the request ends before a response was given (client reset, connection lost).
    var onCancel: (() -> Void)? { get set }
    /// Sends the status and headers, the body, then the trailers. Ignored after a first response
    /// or after cancellation.
    func respond(_ response: HTTPResponse)
}

/// A response writer that keeps its answer-once state in a `ResponseOnce`: the writer protocol's
/// state properties come from it, written once here for every connection type.
protocol AnswersOnce: HTTPResponseWriter {
    var once: ResponseOnce { get set }
}

extension AnswersOnce {
    var isCancelled: Bool { once.isCancelled }
    var hasResponded: Bool { once.hasResponded }
    var onCancel: (() -> Void)? {
        get { once.onCancel }
        set { once.onCancel = newValue }
    }
}

/// The answer-once bookkeeping every response writer keeps: the first response wins, a response
/// after cancellation is dropped, and `onCancel` runs at most once. Loop-confined, like its writer.
struct ResponseOnce {
    private(set) var isCancelled = false
    private(set) var hasResponded = false
    var onCancel: (() -> Void)?

    /// True when this is the response to send (the first, before any cancellation).
    mutating func claim() -> Bool {
        guard !hasResponded, !isCancelled else { return false }
        hasResponded = true
        onCancel = nil
        return true
    }

    /// Marks the request cancelled; returns the action to run, once, after the mutation ends.
    mutating func cancel() -> (() -> Void)? {
        guard !hasResponded, !isCancelled else { return nil }
        isCancelled = true
        defer { onCancel = nil }
        return onCancel
    }
}

/// The application side of the server. Called on the connection's loop thread.
public protocol HTTPHandler: AnyObject {
    /// Largest request body accepted for this route; a larger one is answered with `bodyTooLarge`.
    func requestBodyLimit(method: String, path: String) -> Int
    /// The answer when a request breaks a server limit (headers or body too large); the content
    /// type, when known, lets the answer speak the request's protocol.
    func limitExceeded(_ violation: HTTPLimitViolation, version: HTTPVersion, method: String, path: String, contentType: String?) -> HTTPResponse
    /// Handles one request; answers through `writer`, now or later on the same loop.
    func handle(_ request: HTTPRequest, writer: HTTPResponseWriter)
}

public enum HTTPLimitViolation: Sendable, Equatable {
    case headerListTooLarge(limit: Int)
    case bodyTooLarge(limit: Int)
    /// The request would take the connection or worker past its request-byte budget: try later
    /// (503 `unavailable`).
    case serverBusy
    /// The request did not arrive whole within `seconds` of its first byte (408 / `deadline_exceeded`).
    case requestTimeout(seconds: Int)
}
