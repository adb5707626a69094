import Synchronization

/// "Voucherify said stop until T", shared by every worker: the limit belongs to the Voucherify
/// project, not to one loop, so one worker's 429 holds all of them back. Lock-free.
public final class RateLimitGate: Sendable {
    private let blockedUntilMilliseconds = Atomic<Int64>(0)

    public init() {}

    /// Blocks calls until `milliseconds` on the monotonic clock (`Loop.monotonicMilliseconds`);
    /// a later instant already set is kept.
    public func block(untilMilliseconds milliseconds: Int64) {
        var current = blockedUntilMilliseconds.load(ordering: .relaxed)
        while current < milliseconds {
            let (exchanged, original) = blockedUntilMilliseconds.compareExchange(
                expected: current, desired: milliseconds, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Whole seconds left before calls are allowed again; nil when they are allowed now.
    public func secondsBlocked(nowMilliseconds now: Int64) -> Int? {
        let until = blockedUntilMilliseconds.load(ordering: .relaxed)
        return until > now ? Int((until - now + 999) / 1000) : nil
    }
}
