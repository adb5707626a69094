/// A complete HTTP/2 request as the server hands it to the application.
public struct HTTPRequest: Sendable {
    public let method: String
    /// The `:path` up to `?`, not decoded.
    public let path: String
    /// What follows `?` in `:path`, not decoded; nil when there is none.
    public let query: String?
    /// Header fields as received (HTTP/2 names are lowercase); pseudo-headers excluded.
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]

    public init(method: String, path: String, query: String?, headers: [(name: String, value: String)], body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by lowercase name.
    public func header(_ name: String) -> String? {
        headers.first(where: { $0.name == name })?.value
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
