import Dispatch
import Glibc
import EventLoop
import Synchronization
import Testing

/// A loop running on its own thread for the length of a test.
final class RunningLoop: Sendable {
    let loop: Loop
    private let group: LoopGroup

    init(wallClock: (@Sendable () -> Int64)? = nil) throws {
        group = try LoopGroup(loops: [try Loop(wallClock: wallClock)])
        loop = group.loops[0]
        try group.start()
    }

    deinit { group.stopAndWait() }
}

@Suite struct NextTickTests {
    @Test func runsAfterTheCurrentCallbackInOrder() throws {
        let running = try RunningLoop()
        let recorded = Mutex<[String]>([])
        let finished = DispatchSemaphore(value: 0)
        running.loop.execute {
            let loop = running.loop
            loop.nextTick { recorded.withLock { $0.append("tick 1") } }
            loop.nextTick {
                recorded.withLock { $0.append("tick 2") }
                // Queued by a tick: runs on a later turn, after the rest of this batch.
                loop.nextTick {
                    recorded.withLock { $0.append("tick 4") }
                    finished.signal()
                }
            }
            loop.nextTick { recorded.withLock { $0.append("tick 3") } }
            recorded.withLock { $0.append("callback") }
        }
        finished.wait()
        #expect(recorded.withLock { $0 } == ["callback", "tick 1", "tick 2", "tick 3", "tick 4"])
    }

    /// A tick that keeps queueing ticks must not starve I/O: a byte waiting in a pipe is read
    /// while the chain still runs, not after it ends.
    @Test func aChainOfTicksDoesNotStarveIO() throws {
        let running = try RunningLoop()
        let loop = running.loop
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let (readEnd, writeEnd) = (fds[0], fds[1])
        defer { close(readEnd); close(writeEnd) }
        let chainLength = 100_000
        let ticksWhenReadable = Mutex<Int?>(nil)
        let done = DispatchSemaphore(value: 0)
        final class Chain { var count = 0; var watcher: IOWatcher? }
        try loop.runAndWait {
            let chain = Chain()
            let watcher = IOWatcher(loop: loop, fd: readEnd) { _ in
                ticksWhenReadable.withLock { $0 = $0 ?? chain.count }
                try? chain.watcher?.watch([])
            }
            chain.watcher = watcher
            try watcher.watch(.read)
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
            func step() {
                chain.count += 1
                if chain.count < chainLength { loop.nextTick(step) } else { chain.watcher = nil; done.signal() }
            }
            loop.nextTick(step)
        }
        done.wait()
        let seenAt = try #require(ticksWhenReadable.withLock { $0 })
        #expect(seenAt < 1000)
    }

    @Test func runsOnTheLoopThread() throws {
        let running = try RunningLoop()
        let onLoop = Mutex<Bool?>(nil)
        let finished = DispatchSemaphore(value: 0)
        running.loop.execute {
            running.loop.nextTick {
                onLoop.withLock { $0 = running.loop.inLoop }
                finished.signal()
            }
        }
        finished.wait()
        #expect(onLoop.withLock { $0 } == true)
        #expect(!running.loop.inLoop)
    }
}

@Suite struct ClockTests {
    @Test func wallClockCanBeReplacedWithoutMovingTheMonotonicClock() throws {
        let loop = try Loop(wallClock: { 42_000 })
        #expect(loop.nowMilliseconds == 42_000)
        let first = loop.monotonicMilliseconds
        #expect(first > 0)
        #expect(loop.monotonicMilliseconds >= first)
    }
}

@Suite struct TimerTests {
    @Test func firesOnceAndCanBeCancelled() throws {
        let running = try RunningLoop()
        let fired = Mutex(0)
        let done = DispatchSemaphore(value: 0)
        try running.loop.runAndWait {
            let cancelled = try Timer.schedule(on: running.loop, after: 5) { fired.withLock { $0 += 100 } }
            cancelled.cancel()
            #expect(!cancelled.isArmed)
            try Timer.schedule(on: running.loop, after: 10) {
                fired.withLock { $0 += 1 }
                done.signal()
            }
        }
        done.wait()
        try running.loop.runAndWait {}
        #expect(fired.withLock { $0 } == 1)
    }

    /// A negative delay (e.g. a deadline already past) fires on the next loop turn.
    @Test(arguments: [-1_500, Int.min])
    func negativeDelaysFireAtOnce(_ milliseconds: Int) throws {
        let running = try RunningLoop()
        let done = DispatchSemaphore(value: 0)
        try running.loop.runAndWait { try Timer.schedule(on: running.loop, after: milliseconds) { done.signal() } }
        done.wait()
    }

    /// A delay beyond a year (a caller's absurd deadline) is clamped, not handed to libevent's
    /// arithmetic: the timer stays armed and does not fire.
    @Test func absurdDelaysStayArmed() throws {
        let running = try RunningLoop()
        let timer = try running.loop.runAndWait { LoopBound(try Timer.schedule(on: running.loop, after: Int.max) {}, loop: running.loop) }
        try running.loop.runAndWait { running.loop.nextTick {} }
        #expect(try running.loop.runAndWait { timer.value.isArmed })
        try running.loop.runAndWait { timer.value.cancel() }
    }
}

@Suite struct LoopBoundTests {
    @Test func carriesALoopObjectThroughExecute() throws {
        final class Counter { var value = 0 }
        let running = try RunningLoop()
        let bound = try running.loop.runAndWait { LoopBound(Counter(), loop: running.loop) }
        let done = DispatchSemaphore(value: 0)
        running.loop.execute {
            bound.value.value += 1
            done.signal()
        }
        done.wait()
        #expect(try running.loop.runAndWait { bound.value.value } == 1)
    }
}
