import CLibevent
import Glibc
import Synchronization

/// Routes libevent's own log lines through one place: remembered during start-up (so a bind failure
/// can say why in a single line), printed to stderr with our prefix afterwards.
enum LibeventLog {
    private struct Capture {
        var active = false
        var lastMessage: String?
    }

    /// libevent's log callback is a C function with no context pointer, so its state is global;
    /// only the loop thread logs, the lock just makes that provable.
    private static let state = Mutex(Capture())

    static func install() {
        event_set_log_callback { severity, message in
            let text = message.map { String(cString: $0) } ?? "(no message)"
            let captured = LibeventLog.state.withLock { capture in
                if capture.active { capture.lastMessage = text }
                return capture.active
            }
            if !captured && severity >= EVENT_LOG_WARN {
                logError("libevent: \(text)")
            }
        }
    }

    /// Runs `body` with libevent messages held back; returns what libevent said last, if anything.
    static func capture<T>(_ body: () -> T) -> (T, String?) {
        state.withLock { $0 = Capture(active: true) }
        let result = body()
        let said = state.withLock { capture in
            defer { capture = Capture() }
            return capture.lastMessage
        }
        return (result, said)
    }
}
