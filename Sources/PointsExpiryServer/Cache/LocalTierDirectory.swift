import EventLoop
import Synchronization

/// Every worker's tier in this process, so that an invalidation reaches all of them before it is
/// acknowledged. Each tier is only touched on its own loop; this hands the drop to each loop's
/// queue and counts the answers back on the caller's loop.
final class LocalTierDirectory: Sendable {
    private let tiers = Mutex<[LoopBound<LocalTier>]>([])

    init() {}

    /// Adds a worker's tier (at start-up, on the worker's loop).
    func register(_ tier: LocalTier, loop: Loop) {
        let bound = LoopBound(tier, loop: loop)
        tiers.withLock { $0.append(bound) }
    }

    /// Drops `member` from every registered tier, then calls `done` on `loop` (the caller's, which
    /// must be running this call).
    func drop(member: String, from loop: Loop, done: @escaping () -> Void) {
        loop.assertInLoop()
        let all = tiers.withLock { $0 }
        let pending = LoopBound(PendingDrops(count: all.count, done: done), loop: loop)
        for tier in all {
            if tier.loop === loop {
                tier.value.drop(member: member)
                pending.value.finishedOne()
                continue
            }
            tier.loop.execute {
                tier.value.drop(member: member)
                loop.execute { pending.value.finishedOne() }
            }
        }
        if all.isEmpty { done() }
    }
}

/// Counts the tiers still to drop a member; loop-confined to the invalidation's loop.
private final class PendingDrops {
    private var count: Int
    private let done: () -> Void

    init(count: Int, done: @escaping () -> Void) {
        self.count = count
        self.done = done
    }

    func finishedOne() {
        count -= 1
        if count == 0 { done() }
    }
}
