internal import CLibevent
import Glibc

/// Errors from the event-loop layer; each names the libevent call that failed.
public struct EventLoopError: Error, CustomStringConvertible {
    public let description: String
    init(_ call: String) { description = "\(call) failed" }
}

/// One libevent `event_base`, driven by exactly one thread. Everything that touches the loop's
/// handles runs on that thread; other threads reach it only through `execute`.
public final class Loop: @unchecked Sendable {
    /// `event_base*`; package-visible so adapters in this package can attach C clients to it.
    package let base: OpaquePointer
    /// Self-pipe: other threads write a byte to wake the loop for queued work.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var wakeEvent: OpaquePointer?
    private let queueLock = Mutex()
    private var queued: [@Sendable () -> Void] = []

    public init() throws {
        guard let config = event_config_new() else { throw EventLoopError("event_config_new") }
        defer { event_config_free(config) }
        // One thread per loop: libevent needs no locks of its own.
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue))
        guard let base = event_base_new_with_config(config) else { throw EventLoopError("event_base_new_with_config") }
        self.base = base
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0, fds.allSatisfy({ evutil_make_socket_nonblocking($0) == 0 && evutil_make_socket_closeonexec($0) == 0 }) else {
            event_base_free(base)
            throw EventLoopError("pipe2")
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        let event = event_new(base, wakeRead, Int16(EV_READ | EV_PERSIST), { _, _, arg in
            guard let arg else { return }
            Unmanaged<Loop>.fromOpaque(arg).takeUnretainedValue().runQueued()
        }, Unmanaged.passUnretained(self).toOpaque())
        guard let event, event_add(event, nil) == 0 else {
            if let event { event_free(event) }
            close(fds[0])
            close(fds[1])
            event_base_free(base)
            throw EventLoopError("event_new(wake pipe)")
        }
        wakeEvent = event
    }

    deinit {
        if let wakeEvent { event_free(wakeEvent) }
        close(wakeRead)
        close(wakeWrite)
        event_base_free(base)
    }

    /// Runs the loop on the calling thread until `stop()`.
    public func run() {
        event_base_loop(base, 0)
    }

    /// Asks the loop to return from `run()`; callable from any thread.
    public func stop() {
        execute { [self] in _ = event_base_loopbreak(base) }
    }

    /// Queues `work` to run on the loop thread; callable from any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let wasEmpty = queueLock.withLock { () -> Bool in
            queued.append(work)
            return queued.count == 1
        }
        // One byte per batch is enough; a full pipe already means "wake up".
        if wasEmpty {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    private func runQueued() {
        var drain = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &drain, drain.count) > 0 {}
        let work = queueLock.withLock { () -> [@Sendable () -> Void] in
            defer { queued.removeAll(keepingCapacity: true) }
            return queued
        }
        for item in work { item() }
    }

    /// Milliseconds since the epoch, from the loop's cached clock (cheap on hot paths).
    public var nowMilliseconds: Int64 {
        var tv = timeval()
        event_base_gettimeofday_cached(base, &tv)
        return Int64(tv.tv_sec) * 1000 + Int64(tv.tv_usec) / 1000
    }
}
