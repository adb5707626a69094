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
    static let configuration = CommandConfiguration(
        abstract: "Run the service. Every setting is an environment variable (see README); flags override them.")

    @Option(help: "host:port to listen on (LISTEN).") var listen: String?
    @Option(help: "Event-loop threads (WORKERS).") var workers: Int?
    @Option(help: "Redis URL (REDIS_URL).") var redisURL: String?
    @Option(help: "Voucherify base URL (VOUCHERIFY_API_URL).") var voucherifyApiURL: String?
    @Option(help: "IANA time zone of the Voucherify project (VOUCHERIFY_PROJECT_TIMEZONE).") var timezone: String?
    @Option(help: "Seconds an answer is fresh (CACHE_TTL_SECONDS, default 300).") var cacheTTLSeconds: Int?
    @Option(help: "Seconds a stale answer is served while one refresh runs (CACHE_STALE_WHILE_REVALIDATE_SECONDS, default 60).")
    var cacheStaleWhileRevalidateSeconds: Int?
    @Option(help: "Seconds a stale answer is served while Voucherify cannot be asked (CACHE_STALE_IF_ERROR_SECONDS, default 3600).")
    var cacheStaleIfErrorSeconds: Int?
    @Option(help: "Seconds a not_found is remembered (CACHE_NOT_FOUND_SECONDS, default 60).") var cacheNotFoundSeconds: Int?
    @Option(help: "Shared upstream budget, N/sec, N/min or N/hour (VOUCHERIFY_RATE_LIMIT, default: only Voucherify's headers).")
    var voucherifyRateLimit: String?
    @Option(help: "Share of the budget warming may not touch (VOUCHERIFY_INTERACTIVE_RESERVE, default 0.5).")
    var voucherifyInteractiveReserve: String?
    @Option(help: "PEM certificate chain; with --tls-key-file the port speaks TLS, re-read on SIGHUP (TLS_CERT_FILE).")
    var tlsCertFile: String?
    @Option(help: "PEM private key of that certificate (TLS_KEY_FILE).") var tlsKeyFile: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (LOG_LEVEL).") var logLevel: String?

    func run() throws {
        var environment = ProcessInfo.processInfo.environment
        let overrides: [(String, String?)] = [
            ("LISTEN", listen), ("WORKERS", workers.map(String.init)), ("REDIS_URL", redisURL),
            ("VOUCHERIFY_API_URL", voucherifyApiURL), ("VOUCHERIFY_PROJECT_TIMEZONE", timezone),
            ("CACHE_TTL_SECONDS", cacheTTLSeconds.map(String.init)),
            ("CACHE_STALE_WHILE_REVALIDATE_SECONDS", cacheStaleWhileRevalidateSeconds.map(String.init)),
            ("CACHE_STALE_IF_ERROR_SECONDS", cacheStaleIfErrorSeconds.map(String.init)),
            ("CACHE_NOT_FOUND_SECONDS", cacheNotFoundSeconds.map(String.init)),
            ("VOUCHERIFY_RATE_LIMIT", voucherifyRateLimit), ("VOUCHERIFY_INTERACTIVE_RESERVE", voucherifyInteractiveReserve),
            ("TLS_CERT_FILE", tlsCertFile), ("TLS_KEY_FILE", tlsKeyFile), ("LOG_LEVEL", logLevel),
        ]
        for case let (name, value?) in overrides { environment[name] = value }

        let levelName = environment["LOG_LEVEL"].flatMap { $0.isEmpty ? nil : $0.lowercased() } ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            Self.exitWithConfigurationError("LOG_LEVEL must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(levelName)\"")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
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
