/// When a failed page GET (5xx, timeout, network error) is tried again: exponential backoff with
/// equal jitter (half the step fixed, half random, so retries never come at once and never all
/// together), and only while the wait plus a useful attempt still fits before the caller's
/// deadline. Pure: the clock and the random source are passed in.
public struct RetryPolicy: Equatable, Sendable {
    /// Calls per page in all, the first included.
    public var maxAttempts: Int
    /// The backoff step after the first failure; doubled after each further one.
    public var baseDelayMilliseconds: Int64
    public var maxDelayMilliseconds: Int64
    /// Time an attempt needs to be worth sending: a retry that would leave less before the
    /// deadline is not made.
    public var minimumAttemptMilliseconds: Int64

    public init(maxAttempts: Int = 3, baseDelayMilliseconds: Int64 = 100, maxDelayMilliseconds: Int64 = 2_000,
                minimumAttemptMilliseconds: Int64 = 500) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelayMilliseconds = max(0, baseDelayMilliseconds)
        self.maxDelayMilliseconds = max(0, maxDelayMilliseconds)
        self.minimumAttemptMilliseconds = max(0, minimumAttemptMilliseconds)
    }

    /// The wait before trying again after attempt number `failedAttempt` (1 = the first call)
    /// failed, or nil when no retry is left or none would fit before `deadline` (monotonic ms).
    public func delayBeforeRetry(afterAttempt failedAttempt: Int, now: Int64, deadline: Int64,
                                 using random: inout some RandomNumberGenerator) -> Int64? {
        guard failedAttempt >= 1, failedAttempt < maxAttempts else { return nil }
        let step = backoffStep(afterAttempt: failedAttempt)
        let fixed = step / 2
        let delay = fixed + Int64.random(in: 0...(step - fixed), using: &random)
        guard delay.addingSaturating(minimumAttemptMilliseconds) <= deadline.subtractingSaturating(now) else { return nil }
        return delay
    }

    /// base × 2^(failedAttempt − 1), capped at `maxDelayMilliseconds`.
    func backoffStep(afterAttempt failedAttempt: Int) -> Int64 {
        let doublings = Int64(min(max(1, failedAttempt), 63) - 1)
        return min(maxDelayMilliseconds, baseDelayMilliseconds.multipliedSaturating(by: 1 << doublings))
    }
}
