import Glibc

/// Where Redis is and how long we wait for it. hiredis 0.14 has no timeouts of its own.
public struct RedisConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var password: String?
    public var database: Int
    public var connectTimeoutMilliseconds = 1000
    public var commandTimeoutMilliseconds = 500
    /// A ready connection with nothing sent or answered for this long PINGs, so a Redis that
    /// stops answering is noticed without a caller's command.
    public var healthCheckIntervalMilliseconds = 1000
    /// Reconnect delays grow from the first to the second value.
    public var reconnectBackoffMilliseconds = (first: 100, limit: 2000)

    public static func == (a: RedisConfiguration, b: RedisConfiguration) -> Bool {
        a.host == b.host && a.port == b.port && a.password == b.password && a.database == b.database
    }

    /// Parses `redis://[:password@]host:port[/db]` (also `[user:password@]`; the user is ignored,
    /// hiredis 0.14 speaks the pre-ACL AUTH). Port defaults to 6379, db to 0.
    public init(url: String) throws(RedisURLError) {
        guard url.hasPrefix("redis://") else { throw RedisURLError("must start with redis://") }
        var rest = Substring(url.dropFirst("redis://".count))
        password = nil
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let secret = credentials.firstIndex(of: ":").map { credentials[credentials.index(after: $0)...] } ?? credentials
            password = secret.isEmpty ? nil : String(secret)
        }
        var databasePart: Substring?
        if let slash = rest.firstIndex(of: "/") {
            databasePart = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            port = 6379
            if rest.hasPrefix(":") {
                guard let parsed = Int(rest.dropFirst()), (1...65535).contains(parsed) else { throw RedisURLError("bad port") }
                port = parsed
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let parsed = Int(rest[rest.index(after: colon)...]), (1...65535).contains(parsed) else { throw RedisURLError("bad port") }
            port = parsed
        } else {
            host = String(rest)
            port = 6379
        }
        guard !host.isEmpty else { throw RedisURLError("no host") }
        if let databasePart, !databasePart.isEmpty {
            guard let db = Int(databasePart), db >= 0 else { throw RedisURLError("database must be a number") }
            database = db
        } else {
            database = 0
        }
    }
}

extension RedisConfiguration {
    /// The same configuration with `host` resolved to a numeric address. hiredis 0.14 resolves
    /// names synchronously inside `redisAsyncConnect`, which would stall a loop on every
    /// reconnect; resolving once at start-up (off the loops) keeps DNS off the request path.
    public func resolvingHost() throws(RedisURLError) -> RedisConfiguration {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var found: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &found)
        guard rc == 0, let first = found, let address = first.pointee.ai_addr else {
            throw RedisURLError("host \"\(host)\" does not resolve: \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(found) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(address, first.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else {
            throw RedisURLError("host \"\(host)\" resolved to an unprintable address")
        }
        var resolved = self
        resolved.host = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return resolved
    }
}

public struct RedisURLError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ reason: String) { description = reason }
}
