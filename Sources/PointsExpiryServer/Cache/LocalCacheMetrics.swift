import Prometheus

extension Metrics {
    /// The in-process tier's series (README "Metrics").
    public final class LocalCacheCounters: Sendable {
        /// Member answers served from a worker's tier (also counted in `points_expiry_cache_results_total`).
        let hits: Counter
        /// Records read from Redis and kept in a tier, or discarded because an invalidation arrived
        /// while the read was in flight (or tracking changed).
        let fills: LabeledCounters
        /// Members evicted to stay within LOCAL_CACHE_BYTES.
        let evictions: Counter
        /// Invalidations a tier applied: one member dropped (this replica's invalidations and
        /// other replicas' changes alike), or everything flushed.
        let invalidations: LabeledCounters
        /// 1 while the worker hears Redis' invalidations (its tier may answer), else 0.
        private let tracking: [Gauge]

        init(_ registry: PrometheusCollectorRegistry, workers: Int) {
            hits = registry.counter("points_expiry_local_cache_hits_total", "Member answers served from a worker's in-process tier.")
            fills = LabeledCounters(registry, "points_expiry_local_cache_fills_total",
                                    help: "Records read from Redis and kept in a worker's tier, or discarded (an invalidation arrived during the read).",
                                    label: "result", values: ["kept", "discarded"])
            evictions = registry.counter("points_expiry_local_cache_evictions_total", "Members evicted from a tier to stay within LOCAL_CACHE_BYTES.")
            invalidations = LabeledCounters(registry, "points_expiry_local_cache_invalidations_total",
                                            help: "Invalidations applied to a worker's tier: a member dropped, or everything flushed.",
                                            label: "kind", values: ["member", "flush"])
            tracking = (0..<max(1, workers)).map { worker in
                registry.gauge("points_expiry_local_cache_tracking",
                               "1 while the worker hears Redis invalidations (its tier answers), else 0.",
                               labels: [("worker", String(worker))])
            }
        }

        func setTracking(worker: Int, _ on: Bool) {
            guard tracking.indices.contains(worker) else { return }
            tracking[worker].set(to: on ? 1 : 0)
        }
    }
}
