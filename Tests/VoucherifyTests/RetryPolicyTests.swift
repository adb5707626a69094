import Testing
import TestSupport
@testable import Voucherify

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy()  // 3 attempts, 100 ms doubling to 2 s, 500 ms minimum attempt
    let farDeadline: Int64 = 1_000_000

    @Test func equalJitterKeepsHalfOfEachStepAndSpreadsTheRest() {
        var random = SplitMix64(seed: 7)
        var firsts: [Int64] = []
        for _ in 0..<1_000 {
            let first = policy.delayBeforeRetry(afterAttempt: 1, now: 0, deadline: farDeadline, using: &random)
            let second = policy.delayBeforeRetry(afterAttempt: 2, now: 0, deadline: farDeadline, using: &random)
            #expect((50...100).contains(first ?? -1))
            #expect((100...200).contains(second ?? -1))
            firsts.append(first ?? -1)
        }
        #expect(firsts.min()! <= 52)
        #expect(firsts.max()! >= 98)
    }

    @Test func noRetryAfterTheLastAttempt() {
        var random = SplitMix64(seed: 1)
        #expect(policy.delayBeforeRetry(afterAttempt: 3, now: 0, deadline: farDeadline, using: &random) == nil)
        #expect(policy.delayBeforeRetry(afterAttempt: 0, now: 0, deadline: farDeadline, using: &random) == nil)
        var once = RetryPolicy(maxAttempts: 1)
        #expect(once.delayBeforeRetry(afterAttempt: 1, now: 0, deadline: farDeadline, using: &random) == nil)
        once.maxAttempts = 2
        #expect(once.delayBeforeRetry(afterAttempt: 1, now: 0, deadline: farDeadline, using: &random) != nil)
    }

    @Test func theStepDoublesUpToTheCap() {
        let many = RetryPolicy(maxAttempts: 100)
        #expect((1...8).map { many.backoffStep(afterAttempt: $0) } == [100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000])
        #expect(many.backoffStep(afterAttempt: 99) == 2_000)
        #expect(RetryPolicy(maxAttempts: .max, baseDelayMilliseconds: .max, maxDelayMilliseconds: .max)
            .backoffStep(afterAttempt: .max) == .max)
    }

    /// The backoff plus a minimal useful attempt must fit before the deadline.
    @Test func retriesOnlyWhileTheyFitBeforeTheDeadline() {
        var random = SplitMix64(seed: 11)
        // Without backoff only the 500 ms attempt has to fit.
        let immediate = RetryPolicy(baseDelayMilliseconds: 0)
        #expect(immediate.delayBeforeRetry(afterAttempt: 1, now: 1_000, deadline: 1_500, using: &random) == 0)
        #expect(immediate.delayBeforeRetry(afterAttempt: 1, now: 1_000, deadline: 1_499, using: &random) == nil)
        // After attempt 1 the wait is 50…100 ms: with 600 ms left it always fits, with 549 never.
        for _ in 0..<200 {
            #expect(policy.delayBeforeRetry(afterAttempt: 1, now: 1_000, deadline: 1_600, using: &random) != nil)
            #expect(policy.delayBeforeRetry(afterAttempt: 1, now: 1_000, deadline: 1_549, using: &random) == nil)
        }
        // Between the two it depends on the draw, and a drawn delay always leaves the attempt its time.
        for _ in 0..<200 {
            if let delay = policy.delayBeforeRetry(afterAttempt: 1, now: 1_000, deadline: 1_570, using: &random) {
                #expect(1_000 + delay + 500 <= 1_570)
            }
        }
        #expect(policy.delayBeforeRetry(afterAttempt: 1, now: 1_000, deadline: 0, using: &random) == nil)
    }

    @Test func hostileNumbersNeitherTrapNorRetry() {
        var random = SplitMix64(seed: 3)
        #expect(policy.delayBeforeRetry(afterAttempt: 1, now: .max - 10, deadline: .max, using: &random) == nil)
        #expect(policy.delayBeforeRetry(afterAttempt: .max, now: 0, deadline: .max, using: &random) == nil)
        #expect(policy.delayBeforeRetry(afterAttempt: .min, now: 0, deadline: .max, using: &random) == nil)
        let nonsense = RetryPolicy(maxAttempts: -1, baseDelayMilliseconds: -100, maxDelayMilliseconds: -1, minimumAttemptMilliseconds: -1)
        #expect(nonsense.maxAttempts == 1)
        #expect(nonsense.backoffStep(afterAttempt: 1) == 0)
    }
}
