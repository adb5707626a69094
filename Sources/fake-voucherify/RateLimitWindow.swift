import Foundation

/// Fixed one-minute window that fills the X-Rate-Limit-* headers of every API answer.
/// It only advertises (Remaining counts down, never below 0) unless `enforce` is set,
/// in which case calls past the limit get a 429 until the window ends.
final class RateLimitWindow {
    let limit: Int
    let enforce: Bool
    static let type = "requests_per_minute"

    private var windowStart: Int64 = 0
    private var used = 0

    init(limit: Int, enforce: Bool) {
        self.limit = limit
        self.enforce = enforce
    }

    static func nowSeconds() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// Counts one call. Returns false when the call is over the limit (only meaningful with `enforce`).
    func record(now: Int64 = RateLimitWindow.nowSeconds()) -> Bool {
        roll(now)
        used += 1
        return used <= limit
    }

    /// Seconds until the current window ends (at least 1).
    func secondsToReset(now: Int64 = RateLimitWindow.nowSeconds()) -> Int {
        roll(now)
        return Int(max(1, windowStart + 60 - now))
    }

    func headers(now: Int64 = RateLimitWindow.nowSeconds()) -> [(String, String)] {
        roll(now)
        return [
            ("X-Rate-Limit-Limit", String(limit)),
            ("X-Rate-Limit-Remaining", String(max(0, limit - used))),
            ("X-Rate-Limit-Retry", String(windowStart + 60)),
            ("X-Rate-Limit-Type", RateLimitWindow.type),
        ]
    }

    private func roll(_ now: Int64) {
        let start = now - now % 60
        if start != windowStart {
            windowStart = start
            used = 0
        }
    }
}
