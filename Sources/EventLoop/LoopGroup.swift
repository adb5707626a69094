import Glibc

/// N worker threads, each running its own `Loop`. Work for a loop is set up on its own thread
/// (via `execute`), so every handle a loop owns is created, used and freed there.
public final class LoopGroup: @unchecked Sendable {
    public let loops: [Loop]
    private var threads: [pthread_t] = []

    public convenience init(count: Int) throws {
        precondition(count > 0, "a loop group needs at least one loop")
        self.init(loops: try (0..<count).map { _ in try Loop() })
    }

    public init(loops: [Loop]) {
        self.loops = loops
    }

    /// Starts one thread per loop.
    public func start() throws {
        for loop in loops {
            var thread = pthread_t()
            let box = Unmanaged.passRetained(loop).toOpaque()
            let rc = pthread_create(&thread, nil, { arg in
                guard let arg else { return nil }
                let loop = Unmanaged<Loop>.fromOpaque(arg).takeRetainedValue()
                loop.run()
                return nil
            }, box)
            guard rc == 0 else {
                Unmanaged<Loop>.fromOpaque(box).release()
                throw EventLoopError("pthread_create")
            }
            threads.append(thread)
        }
    }

    /// Asks every loop to stop and waits for their threads to return.
    public func stopAndWait() {
        for loop in loops { loop.stop() }
        wait()
    }

    /// Blocks until every loop thread has returned (after something stopped them).
    public func wait() {
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }
}
