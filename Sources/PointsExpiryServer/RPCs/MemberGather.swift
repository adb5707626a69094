import EventLoop
import Logging

/// Collects one outcome per distinct member of a batch call and answers once: when every member
/// has its outcome, or at the reply deadline (or on `finishNow`) with `missing` for the rest.
/// Outcomes that come later are dropped; the reads behind them go on and still fill the cache.
/// Loop-confined.
final class MemberGather<Outcome> {
    private var outcomes: [Outcome?]
    private var pending: Int
    private let missing: Outcome
    private var timer: Timer?
    private var done: (([Outcome]) -> Void)?

    init(count: Int, missing: Outcome, done: @escaping ([Outcome]) -> Void) {
        outcomes = Array(repeating: nil, count: count)
        pending = count
        self.missing = missing
        self.done = done
    }

    var isFinished: Bool { done == nil }

    /// Answers at `replyBy` (monotonic ms) with what has come by then, unless everything came first.
    func finish(by replyBy: Int64, on loop: Loop, logger: Logger) {
        guard !isFinished else { return }
        guard pending > 0 else { return finishNow() }
        do {
            timer = try Timer.schedule(on: loop, after: Int(clamping: replyBy - loop.monotonicMilliseconds)) { [self] in finishNow() }
        } catch {
            logger.error("could not arm a batch's reply timer; it answers when every member has", metadata: ["error": "\(error)"])
        }
    }

    func deliver(_ outcome: Outcome, at index: Int) {
        guard !isFinished, outcomes[index] == nil else { return }
        outcomes[index] = outcome
        pending -= 1
        if pending == 0 { finishNow() }
    }

    func finishNow() {
        guard let done else { return }
        self.done = nil
        timer?.cancel()
        timer = nil
        done(outcomes.map { $0 ?? missing })
    }
}
