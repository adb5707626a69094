import EventLoop
import ExpiryDomain
import Foundation
import HTTPServer
import Logging
import Voucherify

/// The whole service: N loops, each with its own `Worker`. Shared by `main` and the tests, so
/// tests run exactly what production runs.
public final class PointsExpiryApp: @unchecked Sendable {
    public let configuration: ServiceConfiguration
    public let metrics: Metrics
    private let logger: Logger
    private let group: LoopGroup
    /// Voucherify's health is one fact for every worker: one circuit breaker, one failure log.
    private let voucherifyShared: VoucherifyShared
    /// The rate budget's fallback while Redis is unreachable: one per replica, shared by its workers.
    private let localBudget: LocalRateBudget
    /// Campaign export downloads running at once in this process, over all workers.
    private let exportDownloads = ExportDownloadSlots()
    /// Every worker's in-process tier, so an invalidation reaches all of them.
    private let localTiers = LocalTierDirectory()
    /// Each worker belongs to its loop; this thread only hands them work through it.
    private var workers: [LoopBound<Worker>?]
    /// The port every worker accepts on (resolved when LISTEN asked for port 0).
    public private(set) var port = 0

    public init(configuration: ServiceConfiguration, logger: Logger) throws {
        // Every worker's server reports its connections and refusals to one place, /metrics.
        let serverStats = HTTPServerStats()
        var configuration = configuration
        configuration.server.stats = serverStats
        self.configuration = configuration
        self.logger = logger
        let circuitBreaker = CircuitBreaker()
        let metrics = Metrics(workers: configuration.workers, circuitBreaker: circuitBreaker, serverStats: serverStats)
        self.metrics = metrics
        voucherifyShared = VoucherifyShared(circuitBreaker: circuitBreaker) { outcome, milliseconds in
            metrics.upstreamCallFinished(outcome, milliseconds: milliseconds)
        }
        localBudget = LocalRateBudget(rules: RateBudgetRules(setting: configuration.rateLimit, reserve: configuration.interactiveReserve))
        group = try LoopGroup(count: configuration.workers)
        workers = Array(repeating: nil, count: configuration.workers)
    }

    /// Binds LISTEN once (an address in use, by this or another process, stops start-up naming
    /// LISTEN), then starts the loops and builds each worker on its own thread, every one
    /// accepting from that socket.
    public func start() throws {
        // A peer that goes away while we write must cost that connection an EPIPE, not the
        // process its life (libevent and hiredis write with plain writev/write).
        signal(SIGPIPE, SIG_IGN)
        var configuration = self.configuration
        do {
            configuration.redis = try configuration.redis.resolvingHost()
        } catch {
            throw ConfigurationError(variable: "REDIS_URL", problem: error.description)
        }
        let listening: ListeningSocket
        do {
            listening = try ListeningSocket(address: configuration.server.listen)
        } catch {
            throw ConfigurationError(variable: "LISTEN", problem: "cannot be bound: \(error)")
        }
        port = listening.port
        let listen = String(configuration.server.listen[..<(configuration.server.listen.lastIndex(of: ":") ?? configuration.server.listen.endIndex)])
            + ":\(port)"
        do {
            try group.start()
        } catch {
            group.stopAndWait() // the loops that did start
            throw error
        }
        for (index, loop) in group.loops.enumerated() {
            let worker: LoopBound<Worker>
            do {
                worker = try loop.runAndWait { [configuration, listening, voucherifyShared, localBudget, exportDownloads, localTiers, metrics, logger] in
                    LoopBound(try Worker(index: index, loop: loop, configuration: configuration, listening: listening, voucherifyShared: voucherifyShared,
                                         localBudget: localBudget, exportDownloads: exportDownloads, localTiers: localTiers, metrics: metrics,
                                         logger: logger), loop: loop)
                }
            } catch {
                // Close the workers already built on their own loops, then stop: a failed start
                // leaves nothing running and nothing for `shutdown` to wait on.
                for started in workers.compactMap({ $0 }) { try? started.loop.runAndWait { started.value.close() } }
                group.stopAndWait()
                workers = workers.map { _ in nil }
                throw error
            }
            workers[index] = worker
        }
        logger.info("points-expiry listening", metadata: [
            "listen": "\(listen)", "workers": "\(configuration.workers)",
            "voucherify": "\(configuration.voucherify.baseURL)", "timezone": "\(configuration.timeZone)",
            "webhook": "\(configuration.webhookSecret == nil ? "off (WEBHOOK_SECRET not set)" : "on")",
            "tls": "\(configuration.server.tls == nil ? "off (cleartext h2c)" : "on (ALPN h2, http/1.1)")",
        ])
    }

    /// SIGHUP: re-reads TLS_CERT_FILE and TLS_KEY_FILE. Connections accepted from now on use the
    /// new certificate and open ones keep theirs; a file that cannot be used leaves the old
    /// certificate in place. Reads files: call it off the loops.
    public func reloadTLS() {
        guard let tls = configuration.server.tls else {
            logger.info("nothing to reload: TLS is off (TLS_CERT_FILE and TLS_KEY_FILE not set)")
            return
        }
        do {
            try tls.reload()
            logger.info("reloaded TLS certificate", metadata: ["certificate": "\(tls.certificateFile)", "key": "\(tls.keyFile)"])
        } catch {
            logger.error("could not reload the TLS certificate; keeping the old one", metadata: ["error": "\(error)"])
        }
    }

    /// True when every worker has a ready Redis connection and is not draining (asks each loop;
    /// for tests and start-up checks, never from a loop thread).
    public func allWorkersReady() -> Bool {
        workers.allSatisfy { worker in
            guard let worker else { return false }
            return (try? worker.loop.runAndWait { worker.value.isReady }) ?? false
        }
    }

    /// Graceful stop: every worker stops accepting and sends GOAWAY; in-flight requests get up to
    /// `drainSeconds` to finish; then connections, Redis and curl close and the loops end.
    public func shutdown() {
        guard workers.contains(where: { $0 != nil }) else { return }
        let drained = DispatchGroup()
        for worker in workers.compactMap({ $0 }) {
            drained.enter()
            worker.loop.execute { worker.value.drain { drained.leave() } }
        }
        if drained.wait(timeout: .now() + .seconds(configuration.drainSeconds)) == .timedOut {
            logger.warning("drain deadline passed; closing remaining connections")
        }
        for worker in workers.compactMap({ $0 }) {
            try? worker.loop.runAndWait { worker.value.close() }
        }
        // Stop the loops before the workers are freed: their handles belong to loop threads,
        // which must no longer be running when this thread releases them.
        group.stopAndWait()
        workers = workers.map { _ in nil }
        logger.info("points-expiry stopped")
    }
}
