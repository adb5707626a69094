import CLibevent
import Glibc

/// Routes libevent's own log lines through one place: remembered during start-up (so a bind failure
/// can say why in a single line), printed to stderr with our prefix afterwards. Loop thread only.
enum LibeventLog {
    private static var capturing = false
    private static var captured: String?

    static func install() {
        event_set_log_callback { severity, message in
            let text = message.map { String(cString: $0) } ?? "(no message)"
            if LibeventLog.capturing {
                LibeventLog.captured = text
            } else if severity >= EVENT_LOG_WARN {
                fputs("fake-voucherify: libevent: \(text)\n", stderr)
            }
        }
    }

    /// Runs `body` with libevent messages held back; returns what libevent said last, if anything.
    static func capture<T>(_ body: () -> T) -> (T, String?) {
        capturing = true
        captured = nil
        defer { capturing = false }
        let result = body()
        return (result, captured)
    }
}
