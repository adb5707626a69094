import Synchronization

/// This replica's own budget, used while Redis cannot be asked: the same rules and the same
/// arithmetic (`RateBudgetState`) as the shared one, so the replica keeps the same rate, the
/// remaining cap, the 429 block and the reserve. One per process, shared by every worker, on
/// the process-wide monotonic clock (`Loop.monotonicMilliseconds`). Every observation and every
/// call the shared budget admits here is recorded too, so a fallback starts from what this
/// replica knows and spent rather than from a full bucket.
final class LocalRateBudget: Sendable {
    let rules: RateBudgetRules
    private let state: Mutex<RateBudgetState>

    init(rules: RateBudgetRules) {
        self.rules = rules
        state = Mutex(RateBudgetState(rules: rules))
    }

    func take(upTo wanted: Int64, for priority: AdmissionPriority, now: Int64) -> BudgetDecision {
        state.withLock { $0.take(upTo: wanted, for: priority, rules: rules, now: now) }
    }

    func observe(_ observation: BudgetObservation, now: Int64) {
        state.withLock { $0.observe(observation, rules: rules, now: now) }
    }

    func spend(_ count: Int64, now: Int64) {
        state.withLock { $0.spend(count, rules: rules, now: now) }
    }
}
