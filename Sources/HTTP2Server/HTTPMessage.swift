/// A complete HTTP/2 request as the server hands it to the application.
public struct HTTPRequest: Sendable {
    public let method: String
    /// The `:path` up to `?`, not decoded.
    public let path: String
    /// What follows `?` in `:path`, not decoded; nil when there is none.
    public let query: String?
    /// Regular header fields as received (HTTP/2 names are lowercase), packed by `HeaderBlock`.
    let headerBlock: HeaderBlock
    public let body: [UInt8]

    init(method: String, path: String, query: String?, headerBlock: HeaderBlock, body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.headerBlock = headerBlock
        self.body = body
    }

    /// The first value of a header, by lowercase name.
    public func header(_ name: String) -> String? { headerBlock.first(named: name) }
}

/// Header fields packed into one byte buffer (u16 name length, u16 value length, name, value),
/// so receiving a request makes no String per field; values are decoded only when asked for.
/// Lengths fit: the whole list is capped far below 64 KiB.
struct HeaderBlock: Sendable {
    private(set) var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(256) }

    mutating func append(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        bytes.append(UInt8(truncatingIfNeeded: name.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: name.count))
        bytes.append(UInt8(truncatingIfNeeded: value.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value.count))
        bytes.append(contentsOf: name)
        bytes.append(contentsOf: value)
    }

    mutating func removeAll() { bytes.removeAll() }

    func first(named name: String) -> String? {
        var name = name
        return name.withUTF8 { wanted in
            var offset = 0
            while offset + 4 <= bytes.count {
                let nameLength = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
                let valueLength = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
                let nameStart = offset + 4
                let valueStart = nameStart + nameLength
                if nameLength == wanted.count, bytes[nameStart..<valueStart].elementsEqual(wanted) {
                    return String(decoding: bytes[valueStart..<(valueStart + valueLength)], as: UTF8.self)
                }
                offset = valueStart + valueLength
            }
            return nil
        }
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// The application side of the server. Called on the connection's loop thread.
public protocol HTTPHandler: AnyObject {
    /// Largest request body accepted for this route; a larger one is answered with `bodyTooLarge`.
    func requestBodyLimit(method: String, path: String) -> Int
    /// The answer when a request breaks a server limit (headers or body too large).
    func limitExceeded(_ violation: HTTPLimitViolation, method: String, path: String) -> HTTPResponse
    /// Handles one request; answer through `responder`, now or later on the same loop.
    func handle(_ request: HTTPRequest, responder: Responder)
}

public enum HTTPLimitViolation: Sendable, Equatable {
    case headerListTooLarge(limit: Int)
    case bodyTooLarge(limit: Int)
}
