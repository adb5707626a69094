import Synchronization

/// The kinds of failed Voucherify calls the log reports separately.
public enum UpstreamFailureClass: String, CaseIterable, Sendable {
    case serverError = "5xx"
    /// No answer in time, or never sent because no connection came free in time.
    case timeout
    case network
    case rateLimited = "429"
    /// An answer that is not the documented shape (or far too large).
    case malformed
    /// 401/403: the configured keys are wrong.
    case credentials
    /// Any other refusal (400, 422, …, and statuses Voucherify does not document).
    case otherClientError = "other_4xx"
    /// The request could not even be handed to the HTTP client.
    case requestSetup = "request_setup"
}

/// At most one log line per key per interval, each telling how many were held back since the
/// previous one. Pure: time is passed in (monotonic ms).
public struct LogThrottle<Key: Hashable & Sendable>: Sendable {
    public let intervalMilliseconds: Int64
    private var windows: [Key: Window] = [:]

    private struct Window: Sendable {
        var loggedAt: Int64
        var suppressed: Int
    }

    public init(intervalMilliseconds: Int64 = 60_000) {
        self.intervalMilliseconds = max(0, intervalMilliseconds)
    }

    /// One more event of `key`: nil when it must stay quiet, else the number of events
    /// suppressed since the previous line (0 for the first).
    public mutating func admit(_ key: Key, now: Int64) -> Int? {
        guard var window = windows[key] else {
            windows[key] = Window(loggedAt: now, suppressed: 0)
            return 0
        }
        guard now.subtractingSaturating(window.loggedAt) >= intervalMilliseconds else {
            window.suppressed += 1
            windows[key] = window
            return nil
        }
        windows[key] = Window(loggedAt: now, suppressed: 0)
        return window.suppressed
    }
}

/// The process's `LogThrottle` for failed Voucherify calls: every worker logs through it, so a
/// failing Voucherify costs one line per class per minute, not one per request per worker.
public final class FailureLogLimiter: Sendable {
    private let throttle: Mutex<LogThrottle<UpstreamFailureClass>>

    public init(intervalMilliseconds: Int64 = 60_000) {
        throttle = Mutex(LogThrottle(intervalMilliseconds: intervalMilliseconds))
    }

    /// See `LogThrottle.admit`.
    public func admit(_ failureClass: UpstreamFailureClass, now: Int64) -> Int? {
        throttle.withLock { $0.admit(failureClass, now: now) }
    }
}
