internal import CLibevent
import Dispatch
import Glibc
import Synchronization

/// Errors from the event-loop layer; each names the libevent call that failed.
public struct EventLoopError: Error, CustomStringConvertible {
    public let description: String
    init(_ call: String) { description = "\(call) failed" }
}

/// One libevent `event_base`, driven by exactly one thread. Everything that touches the loop's
/// handles runs on that thread: code already there defers work with `nextTick`; other threads
/// reach it only through `execute`.
public final class Loop: @unchecked Sendable {
    /// `event_base*`; package-visible so adapters in this package can attach C clients to it.
    package let base: OpaquePointer
    /// Self-pipe: other threads write a byte to wake the loop for queued work.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var wakeEvent: OpaquePointer?
    private let queued = Mutex<[@Sendable () -> Void]>([])
    /// Same-thread deferrals: an always-allocated event made active by `nextTick` (no syscall,
    /// no lock), run after the callbacks of the current loop iteration.
    private var tickEvent: OpaquePointer?
    private var ticks: [() -> Void] = []
    /// True while `runTicks` runs: work queued then waits for the next poll (see `nextTick`).
    private var runningTicks = false
    /// The thread running `run()`, for the confinement checks (`assertInLoop`, `nextTick`).
    private let owner = Atomic<UInt>(0)
    private let wallClock: (@Sendable () -> Int64)?

    /// `wallClock` replaces the system's wall-clock time (milliseconds since the epoch) for
    /// `nowMilliseconds`, so tests can move business time without touching timers and deadlines,
    /// which run on the monotonic clock.
    public init(wallClock: (@Sendable () -> Int64)? = nil) throws {
        self.wallClock = wallClock
        guard let config = event_config_new() else { throw EventLoopError("event_config_new") }
        defer { event_config_free(config) }
        // One thread per loop: libevent needs no locks of its own.
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue))
        guard let base = event_base_new_with_config(config) else { throw EventLoopError("event_base_new_with_config") }
        self.base = base
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            event_base_free(base)
            throw EventLoopError("pipe")
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        let me = Unmanaged.passUnretained(self).toOpaque()
        let wake = event_new(base, wakeRead, Int16(EV_READ | EV_PERSIST), { _, _, arg in
            guard let arg else { return }
            Unmanaged<Loop>.fromOpaque(arg).takeUnretainedValue().runQueued()
        }, me)
        let tick = event_new(base, -1, 0, { _, _, arg in
            guard let arg else { return }
            Unmanaged<Loop>.fromOpaque(arg).takeUnretainedValue().runTicks()
        }, me)
        wakeEvent = wake
        tickEvent = tick
        // Every stored property is set: a throw from here on runs deinit, which frees them.
        guard fds.allSatisfy({ evutil_make_socket_nonblocking($0) == 0 && evutil_make_socket_closeonexec($0) == 0 }),
              let wake, tick != nil, event_add(wake, nil) == 0 else {
            throw EventLoopError("event_new(wake pipe)")
        }
    }

    deinit { freeHandles() }

    /// The one teardown path (deinit; also after a failed init).
    private func freeHandles() {
        if let wakeEvent { event_free(wakeEvent) }
        if let tickEvent { event_free(tickEvent) }
        wakeEvent = nil
        tickEvent = nil
        close(wakeRead)
        close(wakeWrite)
        event_base_free(base)
    }

    /// Runs the loop on the calling thread until `stop()`. That thread owns the loop until then.
    public func run() {
        owner.store(UInt(pthread_self()), ordering: .releasing)
        event_base_loop(base, 0)
        // Deferrals queued in the loop's last pass would otherwise never run, and their
        // closures (which hold their owners, which hold this loop) would never be freed. A few
        // rounds finish chains of clean-up; whatever keeps re-queueing after that is dropped.
        for _ in 0..<16 where !ticks.isEmpty { runTicks() }
        ticks.removeAll()
        owner.store(0, ordering: .releasing)
    }

    /// Asks the loop to return from `run()`; callable from any thread.
    public func stop() {
        execute { [self] in _ = event_base_loopbreak(base) }
    }

    /// Queues `work` to run on the loop thread; callable from any thread (mutex + pipe write).
    /// On the loop's own thread, `nextTick` is the cheaper way to defer.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let wasEmpty = queued.withLock { queued in
            queued.append(work)
            return queued.count == 1
        }
        // One byte per batch is enough; a full pipe already means "wake up".
        if wasEmpty {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    /// Runs `body` on the loop thread and blocks the calling thread until it returns (start-up,
    /// shutdown and tests; never call it from the loop's own thread). `body` and its result are
    /// `sending`: the compiler rejects handing the loop anything the caller keeps using, or
    /// returning a loop object the loop still holds (wrap those in `LoopBound`).
    public func runAndWait<T>(_ body: sending @escaping () throws -> sending T) throws -> sending T {
        precondition(!inLoop, "runAndWait called from its own loop would wait forever")
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<T, any Error>?
        nonisolated(unsafe) var work: (() throws -> T)? = body
        execute {
            result = Result { try work!() }
            // Released here, while the caller still waits: whatever `body` captured is never
            // freed on the loop thread after the caller has moved on.
            work = nil
            done.signal()
        }
        done.wait()
        return try result!.get()
    }

    /// Runs `work` on this loop after the callbacks of the current iteration: the way loop code
    /// defers (never call back into a C library from inside its own callback). Loop thread only.
    public func nextTick(_ work: @escaping () -> Void) {
        // Checked in release builds too: the base has no locks, so a tick queued from another
        // thread would corrupt it. One atomic load per call.
        precondition(isConfinedHere, "nextTick called off the loop's thread; use execute")
        ticks.append(work)
        guard ticks.count == 1, let tickEvent else { return }
        if runningTicks {
            // Activated from inside its own callback the event would run again in this same
            // pass, before any I/O: a zero timeout defers it until after the next poll instead.
            var now = timeval(tv_sec: 0, tv_usec: 0)
            if event_add(tickEvent, &now) != 0 { event_active(tickEvent, 0, 0) }
        } else {
            event_active(tickEvent, 0, 0)
        }
    }

    private func runQueued() {
        var drain = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &drain, drain.count) > 0 {}
        let work = queued.withLock { queued in
            defer { queued.removeAll(keepingCapacity: true) }
            return queued
        }
        for item in work { item() }
    }

    private func runTicks() {
        // Work queued by these items runs after the next poll, so a chain of deferrals cannot
        // starve the loop's I/O.
        let work = ticks
        ticks.removeAll(keepingCapacity: true)
        runningTicks = true
        for item in work { item() }
        runningTicks = false
    }

    /// True on the thread currently running this loop.
    public var inLoop: Bool {
        owner.load(ordering: .acquiring) == UInt(pthread_self())
    }

    /// Debug builds: traps when called off the loop's thread while the loop runs (as NIO's
    /// `NIOLoopBound` does). Before `run()` and after it returns, set-up and teardown may happen
    /// on the thread that owns the loop's objects. Release builds: nothing.
    @inlinable
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        #if DEBUG
        precondition(isConfinedHere, "loop-confined object used off its loop's thread", file: file, line: line)
        #endif
    }

    @usableFromInline
    var isConfinedHere: Bool {
        let running = owner.load(ordering: .acquiring)
        return running == 0 || running == UInt(pthread_self())
    }

    /// Wall-clock milliseconds since the epoch, from the loop's cached clock (cheap on hot
    /// paths). Business time only (fetched-at, ages, deduction instants): deadlines and timeouts
    /// use `monotonicMilliseconds`, which an NTP step cannot move.
    public var nowMilliseconds: Int64 {
        if let wallClock { return wallClock() }
        var tv = timeval()
        event_base_gettimeofday_cached(base, &tv)
        return Int64(tv.tv_sec) * 1000 + Int64(tv.tv_usec) / 1000
    }

    /// Milliseconds on a clock that only moves forward (CLOCK_MONOTONIC): for deadlines.
    public var monotonicMilliseconds: Int64 { Self.monotonicMilliseconds() }

    public static func monotonicMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

/// A value that belongs to one loop, in a box that may cross threads: it can be handed to
/// `execute` and opened only on that loop's thread (checked in debug builds), as NIO's
/// `NIOLoopBound` does. The way non-Sendable loop objects travel through `@Sendable` closures.
public struct LoopBound<Value>: @unchecked Sendable {
    public let loop: Loop
    private let wrapped: Value

    public init(_ value: Value, loop: Loop) {
        loop.assertInLoop()
        self.loop = loop
        wrapped = value
    }

    public var value: Value {
        loop.assertInLoop()
        return wrapped
    }
}
