internal import CLibevent

/// Delivers a POSIX signal as a callback on a loop (libevent's self-pipe), so handlers may do real work.
public final class SignalWatcher {
    private var event: OpaquePointer?
    private let onSignal: () -> Void

    public init(loop: Loop, signal: Int32, onSignal: @escaping () -> Void) throws {
        self.onSignal = onSignal
        guard let event = event_new(loop.base, signal, Int16(EV_SIGNAL | EV_PERSIST), { _, _, arg in
            guard let arg else { return }
            Unmanaged<SignalWatcher>.fromOpaque(arg).takeUnretainedValue().onSignal()
        }, nil) else { throw EventLoopError("event_new(signal)") }
        // The callback argument can only name `self` once it exists; the event is not added yet.
        event_assign(event, loop.base, signal, Int16(EV_SIGNAL | EV_PERSIST), event_get_callback(event),
                     Unmanaged.passUnretained(self).toOpaque())
        guard event_add(event, nil) == 0 else {
            event_free(event)
            throw EventLoopError("event_add(signal)")
        }
        self.event = event
    }

    deinit { if let event { event_free(event) } }
}
