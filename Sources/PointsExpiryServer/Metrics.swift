import RPC
import Voucherify
import Synchronization

/// Process-wide counters shared by every worker (atomics: no locks on the request path).
/// Label values come from fixed sets, never from request data.
public final class Metrics: Sendable {
    public final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        public func increment() { value.add(1, ordering: .relaxed) }
        public func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
        public var current: Int { value.load(ordering: .relaxed) }
    }

    /// One method's responses by outcome: "ok" then every Connect code, resolved once per method.
    public final class MethodCounters: RPCOutcomeCounter {
        static let outcomes = ["ok"] + RPCCode.allCases.map(\.rawValue)
        let name: String
        private let counters: [Counter] = MethodCounters.outcomes.map { _ in Counter() }
        private let codeIndex: [RPCCode: Int] = Dictionary(uniqueKeysWithValues: RPCCode.allCases.enumerated().map { ($1, $0 + 1) })

        init(name: String) { self.name = name }

        public func countSuccess() { counters[0].increment() }
        public func count(_ code: RPCCode) { counters[codeIndex[code] ?? 0].increment() }

        fileprivate func render(into text: inout String) {
            for (outcome, counter) in zip(Self.outcomes, counters) where counter.current > 0 {
                text += "points_expiry_rpc_responses_total{method=\"\(name)\",code=\"\(outcome)\"} \(counter.current)\n"
            }
        }
    }

    /// Counters under one label whose values are fixed at start-up; other values count as "other".
    public final class LabeledCounters: Sendable {
        private let label: String
        private let values: [String]
        private let counters: [Counter]

        init(label: String, values: [String]) {
            self.label = label
            self.values = values + ["other"]
            counters = self.values.map { _ in Counter() }
        }

        public func increment(_ value: String) {
            counters[values.firstIndex(of: value) ?? values.count - 1].increment()
        }

        fileprivate func render(_ metric: String, help: String, into text: inout String) {
            text += "# HELP \(metric) \(help)\n# TYPE \(metric) counter\n"
            for (value, counter) in zip(values, counters) {
                text += "\(metric){\(label)=\"\(value)\"} \(counter.current)\n"
            }
        }
    }

    /// Member answers by how the cache served them.
    public let cacheResults = LabeledCounters(label: "result", values: ["hit", "miss", "stale", "negative"])
    /// Lookups Redis could not answer (the request then read Voucherify directly).
    public let cacheUnavailable = Counter()
    /// Requests that waited for a read already in flight: on this worker, or elsewhere in the fleet.
    public let singleFlightJoins = LabeledCounters(label: "scope", values: ["worker", "fleet"])
    /// Stale-while-revalidate refreshes started.
    public let backgroundRefreshes = Counter()
    /// Members WarmMembers was asked for, by what became of them.
    public let warmMembers = LabeledCounters(label: "outcome", values: ["warmed", "already_fresh", "failed", "deferred"])
    /// Webhook deliveries by what became of them.
    public let webhookEvents = LabeledCounters(label: "result", values: [
        "invalidated", "duplicate", "ignored", "unauthenticated", "malformed", "too_large", "unsupported_encoding",
        "cache_unavailable", "not_configured", "server_busy", "request_timeout",
    ])
    public let rateBudget = RateBudgetCounters()
    /// Voucherify HTTP calls by outcome, and their total duration (ms) for a mean.
    public let upstreamCalls = LabeledCounters(label: "outcome", values: UpstreamCallOutcome.allCases.map(\.rawValue))
    public let upstreamMilliseconds = Counter()
    /// The process's circuit breaker, read when metrics are rendered.
    private let circuitBreaker: CircuitBreaker?

    /// Requests to no known method.
    public let unknownMethod: MethodCounters
    private let methods: [String: MethodCounters]

    public init(methods names: [String], circuitBreaker: CircuitBreaker? = nil) {
        self.circuitBreaker = circuitBreaker
        methods = Dictionary(uniqueKeysWithValues: names.map { ($0, MethodCounters(name: $0)) })
        unknownMethod = MethodCounters(name: "unknown")
    }

    /// The counters of a method named at start-up (unknown names share the "unknown" row).
    public func counters(for method: String) -> MethodCounters { methods[method] ?? unknownMethod }


    private static func render(_ metric: String, help: String, _ counter: Counter, into text: inout String) {
        text += "# HELP \(metric) \(help)\n# TYPE \(metric) counter\n\(metric) \(counter.current)\n"
    }

    /// Prometheus text exposition format.
    public func render() -> String {
        var text = ""
        cacheResults.render("points_expiry_cache_results_total", help: "Member answers by cache result.", into: &text)
        Self.render("points_expiry_cache_unavailable_total", help: "Cache lookups Redis could not answer.", cacheUnavailable, into: &text)
        singleFlightJoins.render("points_expiry_single_flight_joins_total", help: "Requests that joined a Voucherify read in flight.",
                                 into: &text)
        Self.render("points_expiry_background_refreshes_total", help: "Stale-while-revalidate refreshes started.", backgroundRefreshes,
                    into: &text)
        warmMembers.render("points_expiry_warm_members_total", help: "Members WarmMembers was asked for, by outcome.", into: &text)
        webhookEvents.render("points_expiry_webhook_events_total", help: "Webhook deliveries by result.", into: &text)
        text += "# HELP points_expiry_rpc_responses_total RPC responses by method and code.\n# TYPE points_expiry_rpc_responses_total counter\n"
        for name in methods.keys.sorted() { methods[name]?.render(into: &text) }
        unknownMethod.render(into: &text)
        rateBudget.render(into: &text)
        upstreamCalls.render("points_expiry_upstream_calls_total", help: "Voucherify HTTP calls by outcome.", into: &text)
        Self.render("points_expiry_upstream_call_milliseconds_total", help: "Time spent in Voucherify calls.", upstreamMilliseconds,
                    into: &text)
        if let snapshot = circuitBreaker?.snapshot {
            text += "# HELP points_expiry_upstream_circuit_state Voucherify circuit breaker: 1 for the current state.\n"
                + "# TYPE points_expiry_upstream_circuit_state gauge\n"
            for state in CircuitBreaker.State.allCases {
                text += "points_expiry_upstream_circuit_state{state=\"\(state.rawValue)\"} \(state == snapshot.state ? 1 : 0)\n"
            }
            text += "# HELP points_expiry_upstream_circuit_opens_total Times the circuit opened.\n"
                + "# TYPE points_expiry_upstream_circuit_opens_total counter\npoints_expiry_upstream_circuit_opens_total \(snapshot.opens)\n"
        }
        return text
    }
}

extension Metrics {
    /// The shared upstream rate budget (`RateBudget`), by caller class.
    public final class RateBudgetCounters: Sendable {
        private let grants = (interactive: Counter(), warming: Counter())
        private let waits = (interactive: Counter(), warming: Counter())
        private let refusals = (interactive: Counter(), warming: Counter())
        let localDecisions = Counter()
        /// Whole tokens left in the bucket at the last decision seen here; -1 before any, and
        /// always without VOUCHERIFY_RATE_LIMIT.
        private let tokens = Atomic<Int>(-1)

        func granted(_ priority: AdmissionPriority) { (priority == .warming ? grants.warming : grants.interactive).increment() }
        func waited(_ priority: AdmissionPriority) { (priority == .warming ? waits.warming : waits.interactive).increment() }
        func refused(_ priority: AdmissionPriority) { (priority == .warming ? refusals.warming : refusals.interactive).increment() }
        func sawTokens(_ count: Int64) { tokens.store(Int(clamping: count), ordering: .relaxed) }

        fileprivate func render(into text: inout String) {
            for (name, help, pair) in [
                ("grants", "Upstream calls the rate budget admitted.", grants),
                ("waits", "Calls that waited in line for a token.", waits),
                ("refusals", "Calls refused: no token before their deadline, a 429 block, or a full line.", refusals),
            ] {
                text += "# HELP points_expiry_rate_budget_\(name)_total \(help)\n# TYPE points_expiry_rate_budget_\(name)_total counter\n"
                text += "points_expiry_rate_budget_\(name)_total{class=\"interactive\"} \(pair.interactive.current)\n"
                text += "points_expiry_rate_budget_\(name)_total{class=\"warming\"} \(pair.warming.current)\n"
            }
            text += """
                # HELP points_expiry_rate_budget_local_decisions_total Budget decisions made by this replica's own bucket because Redis could not be asked.
                # TYPE points_expiry_rate_budget_local_decisions_total counter
                points_expiry_rate_budget_local_decisions_total \(localDecisions.current)
                # HELP points_expiry_rate_budget_tokens Whole tokens left in the bucket at the last decision seen here (-1: none yet, or no VOUCHERIFY_RATE_LIMIT).
                # TYPE points_expiry_rate_budget_tokens gauge
                points_expiry_rate_budget_tokens \(tokens.load(ordering: .relaxed))

                """
        }
    }
}
