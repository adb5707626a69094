import Dispatch
import Testing
@testable import Voucherify

@Suite struct CircuitBreakerStateMachineTests {
    typealias Machine = CircuitBreaker.StateMachine

    /// A machine with the default policy (5 failures, 1 s doubling to 30 s, 30 s probe lease)
    /// opened at `now` by five failed calls.
    func opened(at now: Int64 = 10_000) -> Machine {
        var machine = Machine()
        for _ in 0..<5 { machine.record(.failed, for: .normal, now: now) }
        return machine
    }

    /// The permit of a probe granted at `now`; fails the test when none is granted.
    func probe(_ machine: inout Machine, at now: Int64) throws -> CircuitBreaker.Permit {
        let decision = machine.acquire(now: now)
        guard case .granted(let permit) = decision, case .probe = permit else {
            throw TestFailure("expected a probe at \(now), got \(decision)")
        }
        return permit
    }

    @Test func closedGrantsEveryCall() {
        var machine = Machine()
        #expect(machine.state == .closed)
        for now in [0, 1, 1_000_000] as [Int64] { #expect(machine.acquire(now: now) == .granted(.normal)) }
        #expect(machine.opens == 0)
    }

    @Test func opensOnTheThresholdthConsecutiveFailure() {
        var machine = Machine()
        for _ in 0..<4 { machine.record(.failed, for: .normal, now: 0) }
        #expect(machine.state == .closed)
        machine.record(.failed, for: .normal, now: 0)
        #expect(machine.state == .open)
        #expect(machine.opens == 1)
        #expect(machine.acquire(now: 0) == .rejected(.open(retryInMilliseconds: 1_000)))
        #expect(machine.acquire(now: 400) == .rejected(.open(retryInMilliseconds: 600)))
    }

    @Test func aHealthyAnswerResetsTheCount() {
        var machine = Machine()
        for _ in 0..<4 { machine.record(.failed, for: .normal, now: 0) }
        machine.record(.healthy, for: .normal, now: 0)
        for _ in 0..<4 { machine.record(.failed, for: .normal, now: 0) }
        #expect(machine.state == .closed)
    }

    @Test func anInconclusiveCallNeitherCountsNorResets() {
        var machine = Machine()
        for _ in 0..<4 { machine.record(.failed, for: .normal, now: 0) }
        for _ in 0..<10 { machine.record(.inconclusive, for: .normal, now: 0) }
        #expect(machine.state == .closed)
        machine.record(.failed, for: .normal, now: 0)
        #expect(machine.state == .open)
    }

    @Test func afterTheCooldownExactlyOneProbeGoes() throws {
        var machine = opened(at: 10_000)
        #expect(machine.acquire(now: 10_999) == .rejected(.open(retryInMilliseconds: 1)))
        _ = try probe(&machine, at: 11_000)
        #expect(machine.state == .halfOpen)
        for now in [11_000, 11_001, 20_000] as [Int64] { #expect(machine.acquire(now: now) == .rejected(.probing)) }
    }

    @Test func aHealthyProbeClosesTheCircuitAndResetsTheCooldown() throws {
        var machine = opened(at: 0)
        // One failed probe first: the next open would last 2 s.
        machine.record(.failed, for: try probe(&machine, at: 1_000), now: 1_000)
        machine.record(.healthy, for: try probe(&machine, at: 3_000), now: 3_100)
        #expect(machine.state == .closed)
        #expect(machine.acquire(now: 3_100) == .granted(.normal))
        for _ in 0..<5 { machine.record(.failed, for: .normal, now: 5_000) }
        #expect(machine.acquire(now: 5_000) == .rejected(.open(retryInMilliseconds: 1_000)))
        #expect(machine.opens == 3)
    }

    @Test func eachFailedProbeDoublesTheCooldownUpTo30Seconds() throws {
        var machine = opened(at: 0)
        var now: Int64 = 0
        var cooldowns: [Int64] = [1_000]
        for _ in 0..<7 {
            now += cooldowns.last!
            machine.record(.failed, for: try probe(&machine, at: now), now: now)
            guard case .rejected(.open(let retryIn)) = machine.acquire(now: now) else {
                throw TestFailure("a failed probe must re-open the circuit")
            }
            cooldowns.append(retryIn)
        }
        #expect(cooldowns == [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000])
        #expect(machine.opens == 8)
    }

    @Test func aLostProbeIsReplacedWhenItsLeaseEnds() throws {
        var machine = opened(at: 0)
        let lost = try probe(&machine, at: 1_000)
        #expect(machine.acquire(now: 30_999) == .rejected(.probing))
        let replacement = try probe(&machine, at: 31_000)
        #expect(replacement != lost)
        // The lost probe's late answer decides nothing; the replacement's does.
        machine.record(.healthy, for: lost, now: 31_500)
        #expect(machine.state == .halfOpen)
        machine.record(.healthy, for: replacement, now: 31_600)
        #expect(machine.state == .closed)
    }

    @Test func anAbandonedProbeLetsTheNextCallProbeAtOnce() throws {
        var machine = opened(at: 0)
        let abandoned = try probe(&machine, at: 1_000)
        machine.record(.inconclusive, for: abandoned, now: 1_200)
        #expect(machine.opens == 1)
        _ = try probe(&machine, at: 1_200)
    }

    @Test func answersOfCallsSentBeforeTheCircuitOpenedChangeNothing() throws {
        var machine = opened(at: 0)
        machine.record(.healthy, for: .normal, now: 100)
        machine.record(.failed, for: .normal, now: 100)
        #expect(machine.state == .open)
        #expect(machine.opens == 1)
        _ = try probe(&machine, at: 1_000)
        machine.record(.healthy, for: .normal, now: 1_100)
        #expect(machine.state == .halfOpen)
    }

    @Test func hostileTimesSaturate() throws {
        var machine = opened(at: .max - 2_000)
        #expect(machine.acquire(now: .max - 1_001) == .rejected(.open(retryInMilliseconds: 1)))
        // The lease would end past the end of time: it saturates.
        _ = try probe(&machine, at: .max - 1_000)
        #expect(machine.acquire(now: .max - 1) == .rejected(.probing))
    }

    @Test func policyRejectsNonsense() {
        let policy = CircuitBreaker.Policy(failureThreshold: 0, initialCooldownMilliseconds: -5, maxCooldownMilliseconds: 0,
                                           probeLeaseMilliseconds: 0)
        #expect(policy.failureThreshold == 1)
        #expect(policy.initialCooldownMilliseconds == 1)
        #expect(policy.maxCooldownMilliseconds == 1)
        #expect(policy.probeLeaseMilliseconds == 1)
    }

    @Test(arguments: [
        (CircuitBreaker.Rejection.open(retryInMilliseconds: 1_000), "Voucherify is failing; calls paused for 1 s (circuit open)"),
        (.open(retryInMilliseconds: 1_001), "Voucherify is failing; calls paused for 2 s (circuit open)"),
        (.open(retryInMilliseconds: 1), "Voucherify is failing; calls paused for 1 s (circuit open)"),
        (.probing, "Voucherify is failing; calls paused while one probe call tests it (circuit half-open)"),
    ])
    func rejectionsSayHowLong(_ rejection: CircuitBreaker.Rejection, _ text: String) {
        #expect(rejection.description == text)
    }
}

@Suite struct SharedCircuitBreakerTests {
    /// Threads failing at once open the circuit once; the late failures change nothing.
    @Test func concurrentFailuresOpenItOnce() {
        let breaker = CircuitBreaker(policy: .init(failureThreshold: 3))
        DispatchQueue.concurrentPerform(iterations: 64) { _ in
            if case .granted(let permit) = breaker.acquire(now: 0) { breaker.record(.failed, for: permit, now: 0) }
        }
        #expect(breaker.snapshot == CircuitBreaker.Snapshot(state: .open, opens: 1))
        #expect(CircuitBreaker.State.halfOpen.rawValue == "half_open")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
