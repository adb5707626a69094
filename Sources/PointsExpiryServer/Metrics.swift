import HTTPServer
import Prometheus
import RPC
import RedisClient
import Synchronization
import Voucherify

/// The process's metrics: one Prometheus registry (swift-prometheus) shared by every worker,
/// rendered by `GET /metrics`. Every labelled series is made when the service starts and its
/// handle held, so counting a request is an atomic add (and one histogram record): no lookup,
/// no string and no lock of ours. Label values come from fixed sets, never from request data.
/// The README's "Metrics" section lists every family.
public final class Metrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    /// Read when metrics are rendered: what the servers, the circuit breaker and Redis report.
    private let sources: Sources
    private let rendering = Mutex(())

    /// Member answers by how the cache served them.
    public let cacheResults: LabeledCounters
    /// Lookups Redis could not answer (the request then read Voucherify directly).
    public let cacheUnavailable: Counter
    /// Requests that waited for a read already in flight: on this worker, or elsewhere in the fleet.
    public let singleFlightJoins: LabeledCounters
    /// Stale-while-revalidate refreshes started.
    public let backgroundRefreshes: Counter
    /// Members WarmMembers was asked for, by what became of them.
    public let warmMembers: LabeledCounters
    /// Webhook deliveries by what became of them.
    public let webhookEvents: LabeledCounters
    public let rateBudget: RateBudgetCounters
    /// The in-process tier.
    public let localCache: LocalCacheCounters
    /// Campaign export jobs by how they ended.
    let campaignExports: LabeledCounters
    /// Rows of downloaded campaign exports: counted (ACTIVE), skipped (other statuses), malformed.
    let campaignExportRows: LabeledCounters
    private let upstreamCalls: [(outcome: UpstreamCallOutcome, counter: Counter)]
    private let upstreamDuration: ValueHistogram
    private let redis: RedisCounters
    private let routerRefusals: [Counter]

    /// `workers` sizes the Redis connection gauge; `serverStats` is the one every worker's
    /// server reports to.
    public init(workers: Int = 1, circuitBreaker: CircuitBreaker? = nil, serverStats: HTTPServerStats? = nil) {
        let registry = registry
        cacheResults = LabeledCounters(registry, "points_expiry_cache_results_total", help: "Member answers by how the cache served them.",
                                       label: "result", values: ["hit", "miss", "stale", "negative"])
        cacheUnavailable = registry.counter("points_expiry_cache_unavailable_total",
                                            "Cache lookups Redis could not answer (the caller's read went to Voucherify).")
        singleFlightJoins = LabeledCounters(registry, "points_expiry_single_flight_joins_total",
                                            help: "Requests that joined a Voucherify read in flight, on this worker or in the fleet.",
                                            label: "scope", values: ["worker", "fleet"])
        backgroundRefreshes = registry.counter("points_expiry_background_refreshes_total", "Stale-while-revalidate refreshes started.")
        warmMembers = LabeledCounters(registry, "points_expiry_warm_members_total", help: "Members WarmMembers was asked for, by outcome.",
                                      label: "outcome", values: ["warmed", "already_fresh", "failed", "deferred"])
        webhookEvents = LabeledCounters(registry, "points_expiry_webhook_events_total", help: "Webhook deliveries by result.",
                                        label: "result", values: ["invalidated", "duplicate", "ignored", "unauthenticated", "malformed",
                                                                  "too_large", "unsupported_encoding", "cache_unavailable",
                                                                  "not_configured", "server_busy", "request_timeout"])
        rateBudget = RateBudgetCounters(registry)
        localCache = LocalCacheCounters(registry, workers: workers)
        campaignExports = LabeledCounters(registry, "points_expiry_campaign_exports_total",
                                          help: "Campaign points-expiration export jobs by how they ended.",
                                          label: "result", values: CampaignExportJob.Outcome.allCases.map(\.rawValue))
        campaignExportRows = LabeledCounters(registry, "points_expiry_campaign_export_rows_total",
                                             help: "Rows of downloaded campaign exports: counted (ACTIVE), skipped (other statuses), malformed.",
                                             label: "kind", values: ["counted", "skipped", "malformed"])
        upstreamCalls = UpstreamCallOutcome.allCases.map { outcome in
            (outcome, registry.counter("points_expiry_upstream_calls_total",
                                       "Voucherify HTTP calls (each page, each retry) by outcome.",
                                       labels: [("outcome", outcome.rawValue)]))
        }
        upstreamDuration = registry.histogram("points_expiry_upstream_call_duration_seconds",
                                              "Duration of Voucherify HTTP calls, from the hand-off to the HTTP client to the end.",
                                              buckets: Self.upstreamBuckets)
        redis = RedisCounters(registry, workers: workers)
        routerRefusals = RouterRefusal.allCases.map { Self.rejected(registry, $0.label) }
        sources = Sources(registry, serverStats: serverStats, circuitBreaker: circuitBreaker)
        registry.gauge("points_expiry_build_info",
                       "The running release, as a label; always 1.", labels: [("version", BuildInfo.version)]).set(to: 1)
    }

    /// Prometheus text exposition format, HELP and TYPE on every family.
    public func render() -> String {
        // One render at a time: the read-at-render counters are set from their sources here.
        rendering.withLock { _ in
            sources.update()
            return registry.emitToString()
        }
    }

    /// One HTTP call to Voucherify ended (`UpstreamCallObserver`).
    public func upstreamCallFinished(_ outcome: UpstreamCallOutcome, milliseconds: Int64) {
        upstreamCalls.first { $0.outcome == outcome }?.counter.increment()
        upstreamDuration.record(Double(max(0, milliseconds)) / 1000)
    }

    /// A Redis command ended after `seconds`.
    public func redisCommandFinished(_ outcome: RedisCommandOutcome, seconds: Double) {
        redis.commandFinished(outcome, seconds: seconds)
    }

    /// Whether `worker`'s Redis connection is up (handshake done); a worker out of range is ignored.
    public func setRedisConnected(worker: Int, _ connected: Bool) {
        redis.setConnected(worker: worker, connected)
    }

    static let requestBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60]
    static let upstreamBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    static let redisBuckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

    fileprivate static func rejected(_ registry: PrometheusCollectorRegistry, _ reason: String) -> Counter {
        registry.counter("points_expiry_rejected_requests_total",
                         "Requests and connections refused before a method or endpoint answered them, by reason.",
                         labels: [("reason", reason)])
    }
}

/// The registry's makers, by a family's whole name (spelled out so it can be searched for) and
/// HELP text.
extension PrometheusCollectorRegistry {
    func counter(_ name: String, _ help: String, labels: [(String, String)] = []) -> Counter {
        makeCounter(descriptor: Self.family(name, help), labels: labels)
    }

    func gauge(_ name: String, _ help: String, labels: [(String, String)] = []) -> Gauge {
        makeGauge(descriptor: Self.family(name, help), labels: labels)
    }

    func histogram(_ name: String, _ help: String, labels: [(String, String)] = [], buckets: [Double]) -> ValueHistogram {
        makeValueHistogram(descriptor: Self.family(name, help), labels: labels, buckets: buckets)
    }

    private static func family(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}

extension Metrics: RouterMetrics {
    public func method(_ name: String) -> RouteMetrics {
        RouteCounters(registry, route: name, rpc: true, statuses: RouteCounters.routerStatuses)
    }

    public func endpoint(_ path: String) -> RouteMetrics {
        RouteCounters(registry, route: path, rpc: false, statuses: RouteCounters.endpointStatuses)
    }

    public var unknownRoute: RouteMetrics { method("unknown") }

    public func refused(_ reason: RouterRefusal) { routerRefusals[reason.rawValue].increment() }
}

extension Metrics {
    /// Counters under one label whose values are fixed at start-up; any other value counts as
    /// "other". Finding a value compares a handful of short literals (equal small strings
    /// compare as two words): no hashing, no allocation.
    public final class LabeledCounters: Sendable {
        private let values: [String]
        private let counters: [Counter]

        init(_ registry: PrometheusCollectorRegistry, _ name: String, help: String, label: String, values: [String]) {
            self.values = values
            counters = (values + ["other"]).map { registry.counter(name, help, labels: [(label, $0)]) }
        }

        public func increment(_ value: String, by amount: Int64 = 1) {
            counters[values.firstIndex(of: value) ?? values.count].increment(by: amount)
        }
    }

    /// One route's requests by protocol and code, and its duration histogram. Each worker's
    /// router holds its own, over the registry's shared series.
    final class RouteCounters: RouteMetrics {
        /// The HTTP statuses counted by name: what the router answers before a method runs, and
        /// what the plain endpoints answer. Others count as "other".
        static let routerStatuses = [405, 415, 505]
        static let endpointStatuses = [200, 400, 401, 404, 405, 408, 413, 415, 431, 499, 500, 503]
        /// `ok` and every code, at the code's gRPC number.
        private static let codes: [String] = RPCCode.allCases.reduce(into: Array(repeating: "ok", count: RPCCode.allCases.count + 1)) {
            $0[$1.grpcStatus] = $1.rawValue
        }
        private static let rpcProtocols: [RequestProtocol] = [.connect, .grpc, .grpcWeb]

        /// `[protocol.rawValue * codes.count + grpcStatus]`; empty for a plain endpoint.
        private let rpc: [Counter]
        private let statuses: [Int]
        /// One per status in `statuses`, then "other".
        private let http: [Counter]
        private let duration: ValueHistogram

        init(_ registry: PrometheusCollectorRegistry, route: String, rpc isRPC: Bool, statuses: [Int]) {
            func counter(_ carrier: RequestProtocol, _ code: String) -> Counter {
                registry.counter("points_expiry_requests_total",
                                 "Requests by method (RPC method name, or path of a plain endpoint), protocol and code "
                                     + "(the RPC code, or the HTTP status over plain HTTP).",
                                 labels: [("method", route), ("protocol", carrier.label), ("code", code)])
            }
            rpc = isRPC ? Self.rpcProtocols.flatMap { carrier in Self.codes.map { counter(carrier, $0) } } : []
            self.statuses = statuses
            http = (statuses.map(String.init) + ["other"]).map { counter(.http, $0) }
            duration = registry.histogram("points_expiry_request_duration_seconds",
                                          "Request duration by method, from the arrival of the request's headers to its answer.",
                                          labels: [("method", route)], buckets: Metrics.requestBuckets)
        }

        func answered(over carrier: RequestProtocol, _ outcome: RequestOutcome, seconds: Double?) {
            switch outcome {
            case .rpc(let code) where carrier != .http && !rpc.isEmpty:
                rpc[carrier.rawValue * Self.codes.count + (code?.grpcStatus ?? 0)].increment()
            case .rpc:
                http[statuses.count].increment()
            case .http(let status):
                http[statuses.firstIndex(of: status) ?? statuses.count].increment()
            }
            if let seconds { duration.record(seconds) }
        }
    }

    /// Redis commands and connections.
    final class RedisCounters: Sendable {
        private let errors: Counter
        private let timeouts: Counter
        private let duration: ValueHistogram
        private let connected: [Gauge]

        init(_ registry: PrometheusCollectorRegistry, workers: Int) {
            errors = registry.counter("points_expiry_redis_command_errors_total",
                                      "Redis commands that ended in an error reply or a failed connection.")
            timeouts = registry.counter("points_expiry_redis_command_timeouts_total",
                                        "Redis commands with no answer within the command timeout.")
            duration = registry.histogram("points_expiry_redis_command_duration_seconds",
                                          "Redis command latency, from sending to the answer (or the timeout).",
                                          buckets: Metrics.redisBuckets)
            connected = (0..<max(1, workers)).map { worker in
                registry.gauge("points_expiry_redis_connected",
                               "1 while the worker's Redis connection is ready (handshake done, commands answered within the command timeout), else 0.",
                               labels: [("worker", String(worker))])
            }
        }

        func commandFinished(_ outcome: RedisCommandOutcome, seconds: Double) {
            switch outcome {
            case .ok: break
            case .error: errors.increment()
            case .timeout: timeouts.increment()
            }
            duration.record(max(0, seconds))
        }

        func setConnected(worker: Int, _ up: Bool) {
            guard connected.indices.contains(worker) else { return }
            connected[worker].set(to: up ? 1 : 0)
        }
    }

    /// What other parts count themselves, copied into the registry at each render.
    final class Sources: Sendable {
        private let serverStats: HTTPServerStats?
        private let circuitBreaker: CircuitBreaker?
        private let openConnections: Gauge
        private let openStreams: Gauge
        private let refusals: [(reason: HTTPServerStats.Refusal, counter: Counter)]
        private let acceptFailures: Counter
        private let circuitStates: [(state: CircuitBreaker.State, gauge: Gauge)]
        private let circuitOpens: Counter?

        init(_ registry: PrometheusCollectorRegistry, serverStats: HTTPServerStats?, circuitBreaker: CircuitBreaker?) {
            self.serverStats = serverStats
            self.circuitBreaker = circuitBreaker
            openConnections = registry.gauge("points_expiry_open_connections",
                                             "Client connections open now (TLS handshakes included), over every worker.")
            openStreams = registry.gauge("points_expiry_open_streams", "HTTP/2 streams and HTTP/1.1 requests open now.")
            refusals = HTTPServerStats.Refusal.allCases.map { ($0, Metrics.rejected(registry, $0.rawValue)) }
            acceptFailures = registry.counter("points_expiry_accept_failures_total",
                                              "accept() failures (EMFILE, ENFILE, ENOBUFS...): accepting pauses and backs off.")
            if circuitBreaker != nil {
                circuitStates = CircuitBreaker.State.allCases.map { state in
                    (state, registry.gauge("points_expiry_upstream_circuit_state",
                                           "Voucherify circuit breaker: 1 for the current state.", labels: [("state", state.rawValue)]))
                }
                circuitOpens = registry.counter("points_expiry_upstream_circuit_opens_total", "Times the circuit opened.")
            } else {
                circuitStates = []
                circuitOpens = nil
            }
        }

        func update() {
            if let serverStats {
                openConnections.set(to: Double(serverStats.openConnections))
                openStreams.set(to: Double(serverStats.openStreams))
                for (reason, counter) in refusals { Self.set(counter, serverStats.refusals(reason)) }
                Self.set(acceptFailures, serverStats.acceptFailures)
            }
            if let snapshot = circuitBreaker?.snapshot {
                for (state, gauge) in circuitStates { gauge.set(to: state == snapshot.state ? 1 : 0) }
                if let circuitOpens { Self.set(circuitOpens, snapshot.opens) }
            }
        }

        /// A counter kept elsewhere: swift-prometheus counters only add, so it is reset first
        /// (under the render lock; the source itself only grows).
        private static func set(_ counter: Counter, _ value: Int) {
            counter.reset()
            counter.increment(by: Int64(max(0, value)))
        }
    }
}

extension Metrics {
    /// The shared upstream rate budget (`RateBudget`), by caller class.
    public final class RateBudgetCounters: Sendable {
        private let grants: (interactive: Counter, warming: Counter)
        private let waits: (interactive: Counter, warming: Counter)
        private let refusals: (interactive: Counter, warming: Counter)
        let localDecisions: Counter
        /// Whole tokens left in the bucket at the last decision seen here; -1 before any, and
        /// always without VOUCHERIFY_RATE_LIMIT.
        private let tokens: Gauge

        init(_ registry: PrometheusCollectorRegistry) {
            func pair(_ name: String, _ help: String) -> (interactive: Counter, warming: Counter) {
                let make = { (caller: String) in
                    registry.counter("points_expiry_rate_budget_\(name)_total", help, labels: [("class", caller)])
                }
                return (make("interactive"), make("warming"))
            }
            grants = pair("grants", "Upstream calls the rate budget admitted.")
            waits = pair("waits", "Calls that waited in line for a token.")
            refusals = pair("refusals", "Calls refused: no token before their deadline, a 429 block, or a full line.")
            localDecisions = registry.counter("points_expiry_rate_budget_local_decisions_total",
                                              "Budget decisions made by this replica's own bucket because Redis could not be asked.")
            tokens = registry.gauge("points_expiry_rate_budget_tokens",
                                    "Whole tokens left at the last decision seen here (-1: none yet, or no VOUCHERIFY_RATE_LIMIT).")
            tokens.set(to: -1)
        }

        func granted(_ priority: AdmissionPriority) { (priority == .warming ? grants.warming : grants.interactive).increment() }
        func waited(_ priority: AdmissionPriority) { (priority == .warming ? waits.warming : waits.interactive).increment() }
        func refused(_ priority: AdmissionPriority) { (priority == .warming ? refusals.warming : refusals.interactive).increment() }
        func sawTokens(_ count: Int64) { tokens.set(to: Double(count)) }
    }
}
