import ExpiryDomain
import HTTPServer
import RedisClient
import Voucherify

/// Everything the service needs to start, parsed and validated up front: nothing starts
/// half-configured.
public struct ServiceConfiguration: Sendable {
    public var server: HTTPServerConfiguration
    public var workers: Int
    public var redis: RedisConfiguration
    public var voucherify: VoucherifyConfiguration
    public var schedule: DeductionSchedule
    public var timeZone: String
    /// `CACHE_TTL_SECONDS`, `CACHE_STALE_WHILE_REVALIDATE_SECONDS`, `CACHE_STALE_IF_ERROR_SECONDS`, `CACHE_NOT_FOUND_SECONDS`.
    public var cacheWindows: CacheWindows
    /// Largest Connect request body (after gzip decoding too).
    public var maxRequestBodyBytes = 64 * 1024
    /// Voucherify's webhook secret; nil turns the webhook endpoint off (it answers 503).
    public var webhookSecret: String?
    /// Largest webhook body (Voucherify's payloads are a few KiB; bulk bucket lists can be long).
    public var maxWebhookBodyBytes = 1024 * 1024
    /// How long a graceful stop waits for in-flight requests.
    public var drainSeconds = 10
    /// `VOUCHERIFY_RATE_LIMIT`, the fleet's upstream budget; nil: only Voucherify's headers limit.
    public var rateLimit: RateLimitSetting?
    /// `VOUCHERIFY_INTERACTIVE_RESERVE`: the share of that budget warming may not touch.
    public var interactiveReserve = InteractiveReserve.standard
    /// `EXPORT_REFRESH_SECONDS`: how old a campaign's export may get before it is asked for again.
    public var exportRefreshSeconds = defaultExportRefreshSeconds
    /// `LOCAL_CACHE_BYTES`: the in-process tiers' bound for the whole process, shared evenly by
    /// the workers; 0 turns the tier off (every hit asks Redis).
    public var localCacheBytes = defaultLocalCacheBytes

    public init(server: HTTPServerConfiguration, workers: Int, redis: RedisConfiguration, voucherify: VoucherifyConfiguration,
                timeZone: String, cacheWindows: CacheWindows = CacheWindows()) throws(ConfigurationError) {
        guard let schedule = DeductionSchedule(timeZoneIdentifier: timeZone) else {
            throw ConfigurationError(variable: "VOUCHERIFY_PROJECT_TIMEZONE", problem: "unknown IANA time zone \"\(timeZone)\"")
        }
        self.server = server
        self.workers = workers
        self.redis = redis
        self.voucherify = voucherify
        self.schedule = schedule
        self.timeZone = timeZone
        self.cacheWindows = cacheWindows
    }

    /// The contract's defaults of the settings that are text (`serve --help` shows them too).
    public static let defaultListen = "127.0.0.1:8080"
    public static let defaultRedisURL = "redis://127.0.0.1:6379"
    public static let defaultVoucherifyAPIURL = "https://api.voucherify.io"
    public static let defaultTimeZone = "UTC"
    public static let defaultExportRefreshSeconds = 3600
    public static let defaultLocalCacheBytes = 64 << 20
    /// The most LOCAL_CACHE_BYTES may be (1 TiB): beyond any machine this runs on, and far from overflow.
    public static let maxLocalCacheBytes = 1 << 40

    /// Reads the contract's environment variables (see README). `cores` is the WORKERS default.
    public static func fromEnvironment(_ environment: [String: String], cores: Int) throws(ConfigurationError) -> ServiceConfiguration {
        func value(_ name: String) -> String? {
            guard let raw = environment[name]?.trimmingSpaces, !raw.isEmpty else { return nil }
            return raw
        }
        func wholeNumber(_ name: String, default fallback: Int, min: Int = 1, max: Int) throws(ConfigurationError) -> Int {
            guard let raw = value(name) else { return fallback }
            guard let number = Int(raw), number >= min, number <= max else {
                throw ConfigurationError(variable: name, problem: "must be a whole number from \(min) to \(max), got \"\(raw)\"")
            }
            return number
        }

        let month = 86_400 * 31
        let standardWindows = CacheWindows()
        let listen = value("LISTEN") ?? defaultListen
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ConfigurationError(variable: "LISTEN", problem: "must be host:port, got \"\(listen)\"")
        }
        let redisURL = value("REDIS_URL") ?? defaultRedisURL
        let redis: RedisConfiguration
        do {
            redis = try RedisConfiguration(url: redisURL)
        } catch {
            throw ConfigurationError(variable: "REDIS_URL", problem: "\(error) (expected redis://[:password@]host:port[/db])")
        }
        let baseURL = value("VOUCHERIFY_API_URL") ?? defaultVoucherifyAPIURL
        guard let appID = value("VOUCHERIFY_APP_ID") else {
            throw ConfigurationError(variable: "VOUCHERIFY_APP_ID", problem: "is required (Voucherify application id)")
        }
        guard let appToken = value("VOUCHERIFY_APP_TOKEN") else {
            throw ConfigurationError(variable: "VOUCHERIFY_APP_TOKEN", problem: "is required (Voucherify secret key)")
        }
        var configuration = try ServiceConfiguration(
            server: HTTPServerConfiguration(listen: listen),
            workers: try wholeNumber("WORKERS", default: cores, max: 256),
            redis: redis,
            voucherify: try voucherifyConfiguration(baseURL: baseURL, appID: appID, appToken: appToken),
            timeZone: value("VOUCHERIFY_PROJECT_TIMEZONE") ?? defaultTimeZone,
            cacheWindows: CacheWindows(
            ttlSeconds: try wholeNumber("CACHE_TTL_SECONDS", default: standardWindows.ttlSeconds, max: month),
            staleWhileRevalidateSeconds: try wholeNumber("CACHE_STALE_WHILE_REVALIDATE_SECONDS", default: standardWindows.staleWhileRevalidateSeconds, min: 0, max: month),
            staleIfErrorSeconds: try wholeNumber("CACHE_STALE_IF_ERROR_SECONDS", default: standardWindows.staleIfErrorSeconds, min: 0, max: month),
            notFoundSeconds: try wholeNumber("CACHE_NOT_FOUND_SECONDS", default: standardWindows.notFoundSeconds, min: 0, max: month)))
        // Taken as written (not trimmed): a secret may legitimately contain any character.
        if let secret = environment["WEBHOOK_SECRET"], !secret.isEmpty { configuration.webhookSecret = secret }
        if let rate = value("VOUCHERIFY_RATE_LIMIT") { configuration.rateLimit = try RateLimitSetting(parsing: rate) }
        if let reserve = value("VOUCHERIFY_INTERACTIVE_RESERVE") { configuration.interactiveReserve = try InteractiveReserve(parsing: reserve) }
        configuration.exportRefreshSeconds = try wholeNumber("EXPORT_REFRESH_SECONDS", default: defaultExportRefreshSeconds, max: month)
        configuration.localCacheBytes = try wholeNumber("LOCAL_CACHE_BYTES", default: defaultLocalCacheBytes, min: 0, max: maxLocalCacheBytes)
        configuration.server.tls = try tlsContext(certificateFile: value("TLS_CERT_FILE"), keyFile: value("TLS_KEY_FILE"))
        return configuration
    }
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither. Both files are read now, so a bad one stops
/// start-up naming its variable instead of failing every handshake later.
private func tlsContext(certificateFile: String?, keyFile: String?) throws(ConfigurationError) -> TLSContextHolder? {
    switch (certificateFile, keyFile) {
    case (nil, nil):
        return nil
    case (_?, nil):
        throw ConfigurationError(variable: "TLS_KEY_FILE", problem: "is required when TLS_CERT_FILE is set (the PEM private key)")
    case (nil, _?):
        throw ConfigurationError(variable: "TLS_CERT_FILE", problem: "is required when TLS_KEY_FILE is set (the PEM certificate chain)")
    case let (certificateFile?, keyFile?):
        do {
            return try TLSContextHolder(certificateFile: certificateFile, keyFile: keyFile)
        } catch {
            switch error {
            case .certificate: throw ConfigurationError(variable: "TLS_CERT_FILE", problem: "is not usable: \(error)")
            case .key: throw ConfigurationError(variable: "TLS_KEY_FILE", problem: "is not usable: \(error)")
            // Not about either file, but start-up must still stop with the setting that asked for TLS.
            case .setup: throw ConfigurationError(variable: "TLS_CERT_FILE", problem: "could not be used: \(error)")
            }
        }
    }
}

private func voucherifyConfiguration(baseURL: String, appID: String, appToken: String) throws(ConfigurationError) -> VoucherifyConfiguration {
    do {
        return try VoucherifyConfiguration(baseURL: baseURL, appID: appID, appToken: appToken)
    } catch {
        throw ConfigurationError(variable: "VOUCHERIFY_API_URL", problem: error.description)
    }
}

/// A start-up configuration problem, named by its variable. Never carries a secret's value.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    public let variable: String
    public let problem: String
    public var description: String { "\(variable) \(problem)" }
}

extension String {
    var trimmingSpaces: String {
        var slice = Substring(self)
        while slice.first?.isWhitespace == true { slice = slice.dropFirst() }
        while slice.last?.isWhitespace == true { slice = slice.dropLast() }
        return String(slice)
    }
}
