import ArgumentParser
import Foundation
import Logging
import PointsExpiryServer
import HTTPClient

@main
struct PointsExpiry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "points-expiry",
        abstract: "Loyalty points and their expiry dates, served over HTTP/2 (Connect) from a Redis cache in front of Voucherify.",
        version: "points-expiry \(BuildInfo.version)",
        subcommands: [Serve.self, Warm.self],
        defaultSubcommand: Serve.self)

    /// As ArgumentParser's, except that a command line it cannot parse (an unknown flag, a flag
    /// without its value) exits 2 like every other usage error here, not 64: deploy tooling and
    /// jobs rely on 2 meaning "fix the invocation".
    static func main() {
        // A closed stderr or peer costs a write its EPIPE, never the process its life.
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            let message = Array((fullMessage(for: error) + "\n").utf8)
            _ = message.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            Foundation.exit(2)
        }
    }
}

struct Serve: ParsableCommand {
    private static let standardWindows = CacheWindows()

    static let configuration = CommandConfiguration(
        abstract: "Run the service. Every setting is an environment variable; a flag of the same meaning overrides it.",
        discussion: """
            Set only in the environment, never as flags (ps shows a command line to every user):
            - VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN: the Voucherify credentials (required).
            - WEBHOOK_SECRET: Voucherify's webhook secret (default: none, and POST /webhooks/voucherify answers 503).

            Logs go to standard error. Bad configuration stops start-up with one line naming the variable, exit code 2.
            """)

    @Option(help: ArgumentHelp("Listener, HTTP/2 and HTTP/1.1 on one port (LISTEN, default \(ServiceConfiguration.defaultListen)).", valueName: "host:port"))
    var listen: String?
    @Option(help: ArgumentHelp("Event-loop threads (WORKERS, default: the number of cores).", valueName: "N"))
    var workers: Int?
    @Option(help: ArgumentHelp("redis://[:password@]host:port[/db] (REDIS_URL, default \(ServiceConfiguration.defaultRedisURL)).", valueName: "URL"))
    var redisURL: String?
    @Option(help: ArgumentHelp("Voucherify base URL, no path (VOUCHERIFY_API_URL, default \(ServiceConfiguration.defaultVoucherifyAPIURL)).", valueName: "URL"))
    var voucherifyApiURL: String?
    @Option(help: ArgumentHelp("IANA time zone of the Voucherify project (VOUCHERIFY_PROJECT_TIMEZONE, default \(ServiceConfiguration.defaultTimeZone)).", valueName: "zone"))
    var timezone: String?
    @Option(help: ArgumentHelp("Shared upstream budget, N/sec, N/min or N/hour (VOUCHERIFY_RATE_LIMIT, default: only Voucherify's headers limit).", valueName: "rate"))
    var voucherifyRateLimit: String?
    @Option(help: ArgumentHelp("Share of the budget warming may not touch, 0 to 1 (VOUCHERIFY_INTERACTIVE_RESERVE, default \(InteractiveReserve.standard.share)).", valueName: "share"))
    var voucherifyInteractiveReserve: String?
    @Option(help: ArgumentHelp("Seconds an answer is fresh (CACHE_TTL_SECONDS, default \(standardWindows.ttlSeconds)).", valueName: "seconds"))
    var cacheTTLSeconds: Int?
    @Option(help: ArgumentHelp("Seconds a stale answer is served while one refresh runs (CACHE_STALE_WHILE_REVALIDATE_SECONDS, default \(standardWindows.staleWhileRevalidateSeconds)).", valueName: "seconds"))
    var cacheStaleWhileRevalidateSeconds: Int?
    @Option(help: ArgumentHelp("Seconds a stale answer is served while Voucherify cannot be asked (CACHE_STALE_IF_ERROR_SECONDS, default \(standardWindows.staleIfErrorSeconds)).", valueName: "seconds"))
    var cacheStaleIfErrorSeconds: Int?
    @Option(help: ArgumentHelp("Seconds a not_found is remembered (CACHE_NOT_FOUND_SECONDS, default \(standardWindows.notFoundSeconds)).", valueName: "seconds"))
    var cacheNotFoundSeconds: Int?
    @Option(help: ArgumentHelp("Seconds between refreshes of a campaign's points-expiration export, for GetCampaignExpiration (EXPORT_REFRESH_SECONDS, default \(ServiceConfiguration.defaultExportRefreshSeconds)).", valueName: "seconds"))
    var exportRefreshSeconds: Int?
    @Option(help: ArgumentHelp("Bytes of recent answers kept in process, over all workers; 0 turns the in-process tier off (LOCAL_CACHE_BYTES, default \(ServiceConfiguration.defaultLocalCacheBytes)).", valueName: "bytes"))
    var localCacheBytes: Int?
    @Option(help: ArgumentHelp("PEM certificate chain; with --tls-key-file the port speaks TLS, re-read on SIGHUP (TLS_CERT_FILE, default: none, cleartext).", valueName: "file"))
    var tlsCertFile: String?
    @Option(help: ArgumentHelp("PEM private key of that certificate (TLS_KEY_FILE, default: none).", valueName: "file"))
    var tlsKeyFile: String?
    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (LOG_LEVEL, default info).", valueName: "level"))
    var logLevel: String?
    @Option(help: ArgumentHelp("text or json, one object per line (LOG_FORMAT, default: text when stderr is a terminal, else json).", valueName: "format"))
    var logFormat: String?

    func run() throws {
        var environment = ProcessInfo.processInfo.environment
        let overrides: [(String, String?)] = [
            ("LISTEN", listen), ("WORKERS", workers.map(String.init)), ("REDIS_URL", redisURL),
            ("VOUCHERIFY_API_URL", voucherifyApiURL), ("VOUCHERIFY_PROJECT_TIMEZONE", timezone),
            ("CACHE_TTL_SECONDS", cacheTTLSeconds.map(String.init)),
            ("CACHE_STALE_WHILE_REVALIDATE_SECONDS", cacheStaleWhileRevalidateSeconds.map(String.init)),
            ("CACHE_STALE_IF_ERROR_SECONDS", cacheStaleIfErrorSeconds.map(String.init)),
            ("CACHE_NOT_FOUND_SECONDS", cacheNotFoundSeconds.map(String.init)),
            ("EXPORT_REFRESH_SECONDS", exportRefreshSeconds.map(String.init)),
            ("LOCAL_CACHE_BYTES", localCacheBytes.map(String.init)),
            ("VOUCHERIFY_RATE_LIMIT", voucherifyRateLimit), ("VOUCHERIFY_INTERACTIVE_RESERVE", voucherifyInteractiveReserve),
            ("TLS_CERT_FILE", tlsCertFile), ("TLS_KEY_FILE", tlsKeyFile), ("LOG_LEVEL", logLevel), ("LOG_FORMAT", logFormat),
        ]
        for case let (name, value?) in overrides { environment[name] = value }

        let levelName = environment["LOG_LEVEL"].flatMap { $0.isEmpty ? nil : $0.lowercased() } ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            Self.exitWithConfigurationError("LOG_LEVEL must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(levelName)\"")
        }
        let format: LogFormat
        do {
            format = try LogFormat(setting: environment["LOG_FORMAT"], logsToTerminal: LogFormat.standardErrorIsTerminal)
        } catch {
            Self.exitWithConfigurationError(error.description)
        }
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "points-expiry")

        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration.fromEnvironment(environment, cores: ProcessInfo.processInfo.activeProcessorCount)
        } catch {
            Self.exitWithConfigurationError(error.description)
        }

        // Before any thread exists: libcurl's global state, and SIGTERM/SIGINT/SIGHUP
        // blocked so that every worker inherits the mask and only sigwait below receives them.
        try Curl.globalInit()
        var handledSignals = sigset_t()
        sigemptyset(&handledSignals)
        sigaddset(&handledSignals, SIGTERM)
        sigaddset(&handledSignals, SIGINT)
        sigaddset(&handledSignals, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &handledSignals, nil)

        let app = try PointsExpiryApp(configuration: configuration, logger: logger)
        do {
            try app.start()
        } catch let error as ConfigurationError {
            Self.exitWithConfigurationError(error.description)
        } catch {
            logger.critical("could not start", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
        var received: Int32 = 0
        // SIGHUP re-reads the TLS files (on this thread: the loops never wait on a file).
        while sigwait(&handledSignals, &received) == 0, received == SIGHUP { app.reloadTLS() }
        logger.info("stopping", metadata: ["signal": "\(received == SIGTERM ? "SIGTERM" : "SIGINT")"])
        app.shutdown()
    }

    /// One clear line naming the variable, then exit 2: nothing starts half-configured.
    private static func exitWithConfigurationError(_ message: String) -> Never {
        FileHandle.standardError.write(Data("points-expiry: configuration error: \(message)\n".utf8))
        Foundation.exit(2)
    }
}
