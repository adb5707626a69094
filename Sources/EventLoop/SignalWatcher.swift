internal import CLibevent
import Glibc

/// Calls `onSignal` on a loop's thread when one of `signals` arrives (libevent signal events:
/// libevent's handler only notes the signal, the loop runs the callback in its own turn).
///
/// Use: `SignalWatcher.block` the signals before any thread starts, so that no thread dies of
/// one or takes it first; the watcher unblocks them on the loop's thread once it is watching,
/// which delivers any that came meanwhile, and blocks them again when it goes, so a signal after
/// that waits instead of killing the process mid-cleanup. Loop-confined; one per process at a
/// time (libevent hands a process's signals to one loop).
public final class SignalWatcher {
    private let loop: Loop
    private let signals: [Int32]
    private let onSignal: (Int32) -> Void
    private var events: [OpaquePointer] = []

    /// Blocks `signals` for the calling thread and every thread it starts later.
    public static func block(_ signals: [Int32]) {
        var set = signalSet(signals)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    public init(loop: Loop, signals: [Int32], onSignal: @escaping (Int32) -> Void) throws {
        loop.assertInLoop()
        self.loop = loop
        self.signals = signals
        self.onSignal = onSignal
        let me = Unmanaged.passUnretained(self).toOpaque()
        for signal in signals {
            guard let event = event_new(loop.base, signal, Int16(EV_SIGNAL | EV_PERSIST), { signal, _, arg in
                guard let arg else { return }
                Unmanaged<SignalWatcher>.fromOpaque(arg).takeUnretainedValue().onSignal(signal)
            }, me) else { throw EventLoopError("event_new(signal \(signal))") }
            events.append(event)
            guard event_add(event, nil) == 0 else { throw EventLoopError("event_add(signal \(signal))") }
        }
        var set = Self.signalSet(signals)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    deinit {
        var set = Self.signalSet(signals)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // Freeing the last signal event puts back the handlers libevent replaced.
        for event in events { event_free(event) }
    }

    private static func signalSet(_ signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return set
    }
}
