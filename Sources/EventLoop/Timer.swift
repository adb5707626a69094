internal import CLibevent
import Glibc

/// A one-shot timer on a loop (monotonic: libevent measures timeouts on CLOCK_MONOTONIC). While
/// armed it keeps itself alive, so a caller may drop it after `schedule`; `cancel()` disarms it
/// and releases that hold. Loop-confined.
public final class Timer {
    private let loop: Loop
    private let event: OpaquePointer
    private var action: (() -> Void)?
    private var armedHold: Unmanaged<Timer>?

    /// Longest delay accepted; larger ones (e.g. a caller's absurd deadline) are clamped to it,
    /// so the arithmetic inside libevent cannot overflow.
    public static let maxMilliseconds = 366 * 86_400_000

    /// Schedules `action` to run once after `milliseconds`.
    @discardableResult
    public static func schedule(on loop: Loop, after milliseconds: Int, _ action: @escaping () -> Void) throws -> Timer {
        let timer = try Timer(loop: loop)
        try timer.arm(milliseconds: milliseconds, action)
        return timer
    }

    public init(loop: Loop) throws {
        loop.assertInLoop()
        self.loop = loop
        guard let event = event_new(loop.base, -1, 0, { _, _, arg in
            guard let arg else { return }
            Unmanaged<Timer>.fromOpaque(arg).takeUnretainedValue().fire()
        }, nil) else { throw EventLoopError("event_new(timer)") }
        self.event = event
        // The callback argument can only name `self` once it exists; the event is not armed yet.
        event_assign(event, loop.base, -1, 0, event_get_callback(event), Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { event_free(event) }

    public var isArmed: Bool { armedHold != nil }

    /// (Re)arms the timer; a pending run is replaced. Throws, leaving the timer disarmed, when
    /// libevent refuses the timeout.
    public func arm(milliseconds: Int, _ action: @escaping () -> Void) throws {
        loop.assertInLoop()
        let delay = min(max(0, milliseconds), Self.maxMilliseconds)
        var tv = timeval(tv_sec: delay / 1000, tv_usec: (delay % 1000) * 1000)
        guard event_add(event, &tv) == 0 else {
            cancel()
            throw EventLoopError("event_add(timer)")
        }
        self.action = action
        if armedHold == nil { armedHold = Unmanaged.passRetained(self) }
    }

    public func cancel() {
        loop.assertInLoop()
        event_del(event)
        action = nil
        armedHold?.release()
        armedHold = nil
    }

    private func fire() {
        let action = self.action
        self.action = nil
        let hold = armedHold
        armedHold = nil
        action?()
        hold?.release()
    }
}
