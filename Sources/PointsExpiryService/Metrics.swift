import ExpiryCore
import Synchronization

/// Process-wide counters shared by every worker (atomics: no locks on the request path).
/// Label values come from fixed sets, never from request data.
public final class Metrics: Sendable {
    public final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        public func increment() { value.add(1, ordering: .relaxed) }
        public var current: Int { value.load(ordering: .relaxed) }
    }

    public enum CacheResult: String, CaseIterable, Sendable { case hit, miss, unavailable }
    public enum UpstreamResult: String, CaseIterable, Sendable { case ok, error }

    private let cache: [CacheResult: Counter]
    private let upstream: [UpstreamResult: Counter]
    /// Keyed by "method code"; unknown methods are counted as "unknown".
    private let responses: [String: Counter]
    private let methodNames: Set<String>

    public init(methods: [String]) {
        cache = Dictionary(uniqueKeysWithValues: CacheResult.allCases.map { ($0, Counter()) })
        upstream = Dictionary(uniqueKeysWithValues: UpstreamResult.allCases.map { ($0, Counter()) })
        let names = methods + ["unknown"]
        methodNames = Set(names)
        let codes = ["ok"] + ConnectCode.allCases.map(\.rawValue)
        responses = Dictionary(uniqueKeysWithValues: names.flatMap { name in codes.map { ("\(name) \($0)", Counter()) } })
    }

    public func count(cache result: CacheResult) { cache[result]?.increment() }
    public func count(upstream result: UpstreamResult) { upstream[result]?.increment() }
    public func count(method: String, code: String) {
        responses["\(methodNames.contains(method) ? method : "unknown") \(code)"]?.increment()
    }

    public func value(cache result: CacheResult) -> Int { cache[result]?.current ?? 0 }

    /// Prometheus text exposition format.
    public func render() -> String {
        var text = "# TYPE points_expiry_cache_lookups_total counter\n"
        for result in CacheResult.allCases { text += "points_expiry_cache_lookups_total{result=\"\(result.rawValue)\"} \(value(cache: result))\n" }
        text += "# TYPE points_expiry_upstream_fetches_total counter\n"
        for result in UpstreamResult.allCases { text += "points_expiry_upstream_fetches_total{result=\"\(result.rawValue)\"} \(upstream[result]?.current ?? 0)\n" }
        text += "# TYPE points_expiry_rpc_responses_total counter\n"
        for key in responses.keys.sorted() {
            guard let count = responses[key]?.current, count > 0 else { continue }
            let parts = key.split(separator: " ")
            text += "points_expiry_rpc_responses_total{method=\"\(parts[0])\",code=\"\(parts[1])\"} \(count)\n"
        }
        return text
    }
}

