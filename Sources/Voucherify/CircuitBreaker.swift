import Synchronization

/// Stops calling Voucherify while it keeps failing, for the whole process: every worker's
/// failures count towards opening it, and every worker fails fast while it is open. Touched
/// only on upstream calls (never on cache hits), so one lock is cheap enough. The rules live in
/// `CircuitBreaker.StateMachine`; this class only keeps it behind a lock.
public final class CircuitBreaker: Sendable {
    private let machine: Mutex<StateMachine>

    public init(policy: Policy = Policy()) {
        machine = Mutex(StateMachine(policy: policy))
    }

    /// Asks to send one call now (monotonic ms). A granted permit must be given back to
    /// `record` exactly once, with how the call went.
    public func acquire(now: Int64) -> Decision {
        machine.withLock { $0.acquire(now: now) }
    }

    public func record(_ health: CallHealth, for permit: Permit, now: Int64) {
        machine.withLock { $0.record(health, for: permit, now: now) }
    }

    /// For metrics.
    public var snapshot: Snapshot {
        machine.withLock { Snapshot(state: $0.state, opens: $0.opens) }
    }

    public struct Snapshot: Equatable, Sendable {
        public var state: State
        /// Times the circuit opened since start (a failed probe re-opening it counts too).
        public var opens: Int

        public init(state: State, opens: Int) {
            self.state = state
            self.opens = opens
        }
    }

    public enum State: String, CaseIterable, Sendable {
        case closed
        case open
        /// One probe call is testing Voucherify; everything else still fails fast.
        case halfOpen = "half_open"
    }

    public struct Policy: Equatable, Sendable {
        /// Consecutive failed calls (5xx, timeout, network) that open the circuit.
        public var failureThreshold: Int
        /// How long the circuit first stays open; doubled on each re-open in a row.
        public var initialCooldownMilliseconds: Int64
        public var maxCooldownMilliseconds: Int64
        /// How long a probe may go unanswered before another one is let through: a probe whose
        /// call got lost (its worker shut down) must not keep the circuit half-open for good.
        public var probeLeaseMilliseconds: Int64

        public init(failureThreshold: Int = 5, initialCooldownMilliseconds: Int64 = 1_000,
                    maxCooldownMilliseconds: Int64 = 30_000, probeLeaseMilliseconds: Int64 = 30_000) {
            self.failureThreshold = max(1, failureThreshold)
            self.initialCooldownMilliseconds = max(1, initialCooldownMilliseconds)
            self.maxCooldownMilliseconds = max(self.initialCooldownMilliseconds, maxCooldownMilliseconds)
            self.probeLeaseMilliseconds = max(1, probeLeaseMilliseconds)
        }
    }

    /// Leave to send one call. A probe carries its serial so that the answer of a probe whose
    /// lease ran out cannot decide for the one let through after it.
    public enum Permit: Equatable, Sendable {
        case normal
        case probe(serial: UInt64)
    }

    public enum Decision: Equatable, Sendable {
        case granted(Permit)
        case rejected(Rejection)
    }

    public enum Rejection: Equatable, Sendable, CustomStringConvertible {
        /// Open: no call until the cooldown ends.
        case open(retryInMilliseconds: Int64)
        /// Half-open: the one probe is under way.
        case probing

        public var description: String {
            switch self {
            case .open(let milliseconds):
                let seconds = milliseconds / 1000 + (milliseconds % 1000 == 0 ? 0 : 1)
                return "Voucherify is failing; calls paused for \(max(1, seconds)) s (circuit open)"
            case .probing:
                return "Voucherify is failing; calls paused while one probe call tests it (circuit half-open)"
            }
        }
    }

    /// What a call said about Voucherify's health.
    public enum CallHealth: Equatable, Sendable {
        /// It answered (any answer but a 5xx: a 404 or a 429 comes from a working service).
        case healthy
        /// 5xx, timeout, network error.
        case failed
        /// Says nothing: the call never reached Voucherify (denied, cancelled, never sent).
        case inconclusive
    }

    /// The circuit's rules, without locks or clocks: time is passed in (monotonic ms).
    ///
    /// closed ──N consecutive failures──▶ open ──cooldown over, next acquire──▶ half-open
    /// half-open ──probe healthy──▶ closed;  ──probe failed──▶ open (cooldown doubled, capped)
    /// half-open ──probe inconclusive or lease over──▶ the next acquire is the new probe
    public struct StateMachine: Sendable {
        public let policy: Policy
        public private(set) var opens = 0
        private var phase: Phase = .closed(consecutiveFailures: 0)
        /// The next open period; back to the initial one once a probe succeeds.
        private var cooldown: Int64
        private var probeSerial: UInt64 = 0

        private enum Phase: Equatable {
            case closed(consecutiveFailures: Int)
            case open(until: Int64)
            case halfOpen(probe: UInt64, leaseEnds: Int64)
        }

        public init(policy: Policy = Policy()) {
            self.policy = policy
            cooldown = policy.initialCooldownMilliseconds
        }

        /// Open until a probe is let through: an open circuit whose cooldown is over reads
        /// `open` until the next call asks.
        public var state: State {
            switch phase {
            case .closed: return .closed
            case .open: return .open
            case .halfOpen: return .halfOpen
            }
        }

        public mutating func acquire(now: Int64) -> Decision {
            switch phase {
            case .closed:
                return .granted(.normal)
            case .open(let until) where now < until:
                return .rejected(.open(retryInMilliseconds: until - now))
            case .halfOpen(_, let leaseEnds) where now < leaseEnds:
                return .rejected(.probing)
            case .open, .halfOpen:
                probeSerial &+= 1
                phase = .halfOpen(probe: probeSerial, leaseEnds: now.addingSaturating(policy.probeLeaseMilliseconds))
                return .granted(.probe(serial: probeSerial))
            }
        }

        /// A call granted `permit` ended. Answers that no longer match the phase (a call sent
        /// before the circuit opened, a probe whose lease ran out) change nothing.
        public mutating func record(_ health: CallHealth, for permit: Permit, now: Int64) {
            switch (permit, phase) {
            case (.normal, .closed(let failures)):
                switch health {
                case .healthy: phase = .closed(consecutiveFailures: 0)
                case .failed where failures + 1 >= policy.failureThreshold: open(now: now)
                case .failed: phase = .closed(consecutiveFailures: failures + 1)
                case .inconclusive: break
                }
            case (.probe(let serial), .halfOpen(let current, _)) where serial == current:
                switch health {
                case .healthy:
                    phase = .closed(consecutiveFailures: 0)
                    cooldown = policy.initialCooldownMilliseconds
                case .failed:
                    open(now: now)
                case .inconclusive:
                    // Nothing learnt: the next call becomes the probe.
                    phase = .open(until: now)
                }
            default:
                break
            }
        }

        private mutating func open(now: Int64) {
            phase = .open(until: now.addingSaturating(cooldown))
            opens += 1
            cooldown = min(policy.maxCooldownMilliseconds, cooldown.multipliedSaturating(by: 2))
        }
    }
}
