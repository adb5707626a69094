import HTTPClient

/// Where Voucherify is and how the service authenticates to it.
public struct VoucherifyConfiguration: Sendable {
    /// `scheme://host[:port]`, no trailing slash, e.g. `https://api.voucherify.io`.
    public let baseURL: String
    public let appID: String
    public let appToken: String
    public var connectTimeoutMilliseconds = 2000
    /// One page request's own limit; a read's deadline may cut it shorter.
    public var requestTimeoutMilliseconds = 5000
    public var retry = RetryPolicy()

    /// Validates `baseURL`: `http://` or `https://`, a host, an optional port, and no path,
    /// query or credentials (the client appends `/v1/...` itself, so a path such as `/v1` would
    /// turn every call into a misleading 404). One trailing slash is accepted.
    public init(baseURL: String, appID: String, appToken: String) throws(BaseURLError) {
        self.baseURL = try Self.validated(baseURL)
        self.appID = appID
        self.appToken = appToken
    }

    /// Why a base URL was refused; says what to write instead.
    public struct BaseURLError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    private static func validated(_ url: String) throws(BaseURLError) -> String {
        let lowered = url.lowercased()
        guard let scheme = ["http://", "https://"].first(where: { lowered.hasPrefix($0) }) else {
            throw BaseURLError(description: "must start with http:// or https://, got \"\(url)\"")
        }
        var authority = url.dropFirst(scheme.count)
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        if let slash = authority.firstIndex(of: "/") {
            throw BaseURLError(description: "must have no path (got \"\(authority[slash...])\"); give only scheme://host[:port], e.g. https://api.voucherify.io")
        }
        guard !authority.isEmpty else { throw BaseURLError(description: "has no host, got \"\(url)\"") }
        guard !authority.contains(where: { "?#@ \t\\".contains($0) }) else {
            throw BaseURLError(description: "must be scheme://host[:port] with no query, fragment, credentials or spaces, got \"\(url)\"")
        }
        // An IPv6 literal keeps its colons inside brackets; a port follows the last colon outside them.
        if authority.hasPrefix("["), !authority.contains("]") {
            throw BaseURLError(description: "has an unclosed IPv6 bracket, got \"\(url)\"")
        }
        let hostEnd = authority.lastIndex(of: "]") ?? authority.startIndex
        if let colon = authority[hostEnd...].lastIndex(of: ":") {
            let port = authority[authority.index(after: colon)...]
            guard let number = Int(port), (1...65535).contains(number), authority[..<colon].count > 0 else {
                throw BaseURLError(description: "has a bad port, got \"\(url)\"")
            }
        }
        return String(url.prefix(scheme.count)) + authority
    }

    /// `http://` peers get HTTP/1.1 (as any plain HTTP server expects); `https://` negotiates h2 by ALPN.
    var httpVersion: HTTPClientRequest.Version {
        baseURL.lowercased().hasPrefix("https://") ? .http2OverTLS : .http1
    }
}
