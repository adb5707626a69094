import Codecs

/// Voucherify's fixed-window rate limit, which fills the X-Rate-Limit-* headers of every API
/// answer. A window opens with the first call after the previous window ended and lasts
/// `windowSeconds`: anchored to a call rather than to the clock, so a test's burst lands in one
/// window instead of straddling a boundary. It only advertises (Remaining counts down, never below
/// 0) unless `enforce` is set; then calls past the limit get a 429 until the window ends.
/// Loop-confined; times are wall-clock epoch milliseconds, as the headers speak epoch seconds.
final class RateLimitWindow {
    struct Settings {
        var limit: Int
        var windowSeconds: Int
        var enforce: Bool

        static let limits = 1...1_000_000_000
        static let windowLengths = 1...86_400

        /// What is wrong with these settings, naming the fields as the caller knows them.
        func problem(limitName: String, windowName: String) -> String? {
            if !Settings.limits.contains(limit) { return "\(limitName) must be \(Settings.limits.lowerBound)…\(Settings.limits.upperBound)" }
            if !Settings.windowLengths.contains(windowSeconds) {
                return "\(windowName) must be \(Settings.windowLengths.lowerBound)…\(Settings.windowLengths.upperBound)"
            }
            return nil
        }
    }

    /// The body `POST /_fake/rate-limit` accepts; an omitted field keeps its value.
    struct Request: Decodable {
        let limit: Int?
        let window_seconds: Int?
        let enforce: Bool?
    }

    /// One call's verdict.
    struct Admission {
        /// False only when enforcing and the call is over the limit.
        let allowed: Bool
        /// Calls that arrived in this window so far, this one and refused ones included.
        let callsInWindow: Int
    }

    private(set) var settings: Settings
    /// When the open window ends; nil until a call opens one.
    private var windowEndMs: Int64?
    private var used = 0

    init(_ settings: Settings) {
        self.settings = settings
    }

    /// Applies `request` over the current settings and starts afresh (no window open), so the
    /// new limit is measured from the next call. Changes nothing on bad input.
    func configure(_ request: Request) throws(ControlError) {
        var next = settings
        next.limit = request.limit ?? next.limit
        next.windowSeconds = request.window_seconds ?? next.windowSeconds
        next.enforce = request.enforce ?? next.enforce
        if let problem = next.problem(limitName: "limit", windowName: "window_seconds") { throw .badRequest(problem) }
        settings = next
        windowEndMs = nil
        used = 0
    }

    /// Counts one call arriving at `nowMs`.
    func admit(nowMs: Int64) -> Admission {
        roll(nowMs)
        if windowEndMs == nil { windowEndMs = nowMs + Int64(settings.windowSeconds) * 1000 }
        used += 1
        return Admission(allowed: !settings.enforce || used <= settings.limit, callsInWindow: used)
    }

    /// Whole seconds until the open window ends, at least 1 (the value of Retry-After).
    func secondsToWindowEnd(nowMs: Int64) -> Int {
        Int(max(1, (windowEnd(nowMs: nowMs) - nowMs + 999) / 1000))
    }

    /// The epoch second by which the open window has ended (X-Rate-Limit-Retry). With no window
    /// open, when one opened now would end.
    func windowEndSeconds(nowMs: Int64) -> Int64 {
        (windowEnd(nowMs: nowMs) + 999) / 1000
    }

    /// The headers of an answer sent at `nowMs`.
    func headers(nowMs: Int64) -> [(String, String)] {
        roll(nowMs)
        return headers(remaining: max(0, settings.limit - used), retryAt: windowEndSeconds(nowMs: nowMs))
    }

    /// The headers with Remaining and Retry as given (a 429 says 0 and when to come back).
    func headers(remaining: Int, retryAt epochSeconds: Int64) -> [(String, String)] {
        [
            ("X-Rate-Limit-Limit", String(settings.limit)),
            ("X-Rate-Limit-Remaining", String(remaining)),
            ("X-Rate-Limit-Retry", String(epochSeconds)),
            ("X-Rate-Limit-Type", type),
        ]
    }

    /// `GET /_fake/rate-limit`.
    func json(nowMs: Int64) -> JSONValue {
        roll(nowMs)
        return .object([
            "limit": .integer(settings.limit),
            "window_seconds": .integer(settings.windowSeconds),
            "enforce": .bool(settings.enforce),
            "type": .string(type),
            "used": .integer(used),
            "remaining": .integer(max(0, settings.limit - used)),
            "window_ends_at": windowEndMs == nil ? .null : .integer(windowEndSeconds(nowMs: nowMs)),
        ])
    }

    /// X-Rate-Limit-Type: Voucherify names its limits by period.
    private var type: String {
        switch settings.windowSeconds {
        case 60: return "requests_per_minute"
        case 3600: return "requests_per_hour"
        default: return "requests_per_\(settings.windowSeconds)_seconds"
        }
    }

    private func windowEnd(nowMs: Int64) -> Int64 {
        roll(nowMs)
        return windowEndMs ?? nowMs + Int64(settings.windowSeconds) * 1000
    }

    /// Closes the window once its time is over.
    private func roll(_ nowMs: Int64) {
        if let end = windowEndMs, nowMs >= end {
            windowEndMs = nil
            used = 0
        }
    }
}
