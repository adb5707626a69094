import Dispatch
import Testing
@testable import Voucherify

@Suite struct LogThrottleTests {
    @Test func oneLinePerIntervalWithTheCountHeldBack() {
        var throttle = LogThrottle<String>(intervalMilliseconds: 60_000)
        #expect(throttle.admit("5xx", now: 1_000) == 0)
        #expect(throttle.admit("5xx", now: 1_001) == nil)
        #expect(throttle.admit("5xx", now: 30_000) == nil)
        #expect(throttle.admit("5xx", now: 60_999) == nil)
        #expect(throttle.admit("5xx", now: 61_000) == 3)
        #expect(throttle.admit("5xx", now: 61_001) == nil)
        // A quiet spell: the next line says nothing was held back since the last.
        #expect(throttle.admit("5xx", now: 500_000) == 1)
        #expect(throttle.admit("5xx", now: 560_000) == 0)
    }

    @Test func eachKeyHasItsOwnWindow() {
        var throttle = LogThrottle<UpstreamFailureClass>()
        #expect(throttle.admit(.serverError, now: 0) == 0)
        #expect(throttle.admit(.timeout, now: 1) == 0)
        #expect(throttle.admit(.serverError, now: 2) == nil)
        #expect(throttle.admit(.credentials, now: 3) == 0)
        #expect(throttle.admit(.timeout, now: 4) == nil)
        #expect(throttle.admit(.timeout, now: 60_001) == 1)
        #expect(throttle.admit(.serverError, now: 60_001) == 1)
    }

    @Test func aClockThatJumpsDoesNotTrap() {
        var throttle = LogThrottle<Int>(intervalMilliseconds: 10)
        #expect(throttle.admit(1, now: .min) == 0)
        #expect(throttle.admit(1, now: .max) == 0)
        #expect(throttle.admit(1, now: .min) == nil)
    }

    @Test func sharedLimiterCountsEveryThread() {
        let limiter = FailureLogLimiter(intervalMilliseconds: 60_000)
        DispatchQueue.concurrentPerform(iterations: 100) { _ in _ = limiter.admit(.network, now: 0) }
        #expect(limiter.admit(.network, now: 60_000) == 99)
    }

    @Test func classLabels() {
        #expect(UpstreamFailureClass.allCases.map(\.rawValue)
            == ["5xx", "timeout", "network", "429", "malformed", "credentials", "other_4xx", "request_setup"])
    }
}
