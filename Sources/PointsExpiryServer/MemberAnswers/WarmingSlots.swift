/// A worker's warming reads in flight, at most `capacity`; the others wait first come, first
/// served. A waiter whose deadline passed while it waited is turned away when its turn comes
/// (its call has answered without it by then). Loop-confined.
final class WarmingSlots {
    private let capacity: Int
    private var inUse = 0
    private var waiting: [(deadline: Int64, granted: (Bool) -> Void)] = []
    private var head = 0
    /// `release` is handing out slots. A grant's callback may end at once and release its slot
    /// (a budget that refuses on the spot); the outer loop then hands it on, so a long line is
    /// served by iteration, never by recursion.
    private var granting = false

    init(capacity: Int) { self.capacity = capacity }

    /// Calls `granted(true)` once a slot is this caller's (give it back with `release`), or
    /// `granted(false)` when its turn came after `deadline`.
    func acquire(deadline: Int64, now: Int64, granted: @escaping (Bool) -> Void) {
        guard inUse < capacity, head == waiting.count else {
            waiting.append((deadline, granted))
            return
        }
        guard now < deadline else { return granted(false) }
        inUse += 1
        granted(true)
    }

    func release(now: Int64) {
        inUse -= 1
        guard !granting else { return }
        granting = true
        defer { granting = false }
        while inUse < capacity, head < waiting.count {
            let next = waiting[head]
            head += 1
            if head == waiting.count {
                waiting.removeAll(keepingCapacity: true)
                head = 0
            }
            if now < next.deadline {
                inUse += 1
                next.granted(true)
            } else {
                next.granted(false)
            }
        }
    }
}
