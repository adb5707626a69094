internal import CLibevent

/// Watches one file descriptor for readiness on a loop (persistent until cancelled or freed).
/// Loop-confined; the owner keeps it alive for as long as it wants callbacks.
public final class IOWatcher {
    public struct Interest: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let read = Interest(rawValue: 1)
        public static let write = Interest(rawValue: 2)
    }

    private let loop: Loop
    private let fd: Int32
    private var event: OpaquePointer?
    private let onReady: (Interest) -> Void

    public init(loop: Loop, fd: Int32, onReady: @escaping (Interest) -> Void) {
        self.loop = loop
        self.fd = fd
        self.onReady = onReady
    }

    deinit { if let event { event_free(event) } }

    /// Replaces the watched interest; an empty set stops watching.
    public func watch(_ interest: Interest) throws {
        loop.assertInLoop()
        if let event {
            event_free(event)
            self.event = nil
        }
        guard !interest.isEmpty else { return }
        var flags = Int16(EV_PERSIST)
        if interest.contains(.read) { flags |= Int16(EV_READ) }
        if interest.contains(.write) { flags |= Int16(EV_WRITE) }
        guard let event = event_new(loop.base, fd, flags, { _, what, arg in
            guard let arg else { return }
            var ready: Interest = []
            if what & Int16(EV_READ) != 0 { ready.insert(.read) }
            if what & Int16(EV_WRITE) != 0 { ready.insert(.write) }
            Unmanaged<IOWatcher>.fromOpaque(arg).takeUnretainedValue().onReady(ready)
        }, Unmanaged.passUnretained(self).toOpaque()) else { throw EventLoopError("event_new(fd)") }
        guard event_add(event, nil) == 0 else {
            event_free(event)
            throw EventLoopError("event_add(fd)")
        }
        self.event = event
    }
}
