import Codecs
import EventLoop
import Logging
import RPC

/// `WarmMembers`: reads up to 1000 members that are not fresh in the cache (all of them with
/// `force`) at warming priority, until done or the call's deadline (default and cap 300 s);
/// members not reached by then come back in `deferred`. A draining worker answers its warms at
/// once with what they have; a warm whose caller went away ends then too. Members of an ended
/// warm still waiting for a warming slot are dropped, not read. Loop-confined.
final class WarmMembers: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/WarmMembers"
    let name = "WarmMembers"
    let hasNoSideEffects = false
    static let maxTimeoutMilliseconds = 300_000
    let defaultTimeoutMilliseconds: Int? = maxTimeoutMilliseconds
    /// 1000 codes of up to 512 bytes, quoted, plus the rest of the message.
    let maxRequestBodyBytes: Int? = 640 * 1024
    /// A caller that went away gets no answer: its warm stops sending members to be read.
    let observesCancellation = true
    /// Warm calls one worker runs at once; more are refused (they would only queue for the same
    /// warming reads).
    static let maxConcurrentCalls = 16

    private let loop: Loop
    private let answers: MemberAnswers
    private let metrics: Metrics
    private let logger: Logger
    private var running: [ObjectIdentifier: MemberGather<WarmOutcome>] = [:]

    init(loop: Loop, answers: MemberAnswers, metrics: Metrics, logger: Logger) {
        self.loop = loop
        self.answers = answers
        self.metrics = metrics
        self.logger = logger
    }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: WarmMembersRequest = decode(message, reply: reply) else { return }
        guard running.count < Self.maxConcurrentCalls else {
            return reply(.failure(RPCError(.resourceExhausted, "\(Self.maxConcurrentCalls) warms are running on this worker already; retry in a few seconds",
                                           retryAfterSeconds: 5)))
        }
        let now = loop.monotonicMilliseconds
        let replyBy = min(context.replyDeadline(now: now), now + Int64(Self.maxTimeoutMilliseconds))
        let batch = DistinctMembers(request.members)
        var key: ObjectIdentifier?
        let gather = MemberGather<WarmOutcome>(count: batch.members.count, missing: .deferred) { [self] outcomes in
            if let key { running[key] = nil }
            count(outcomes, of: batch)
            reply(.success(UnaryReply(body: WarmSummary(batch, outcomes: outcomes).responseBody(context.codec))))
        }
        key = ObjectIdentifier(gather)
        running[ObjectIdentifier(gather)] = gather
        context.cancellation?.onCancel = { gather.finishNow() }
        for (index, member) in batch.members.enumerated() {
            if let problem = memberProblem(member) {
                gather.deliver(.failed(problem), at: index)
                continue
            }
            answers.warm(campaign: request.campaign, member: member, force: request.force, deadline: replyBy,
                         isWanted: { !gather.isFinished }) { outcome in
                gather.deliver(outcome, at: index)
            }
        }
        gather.finish(by: replyBy, on: loop, logger: logger)
    }

    /// Answers every running warm now (the worker is draining): the rest is deferred.
    func finishAll() {
        for gather in Array(running.values) { gather.finishNow() }
    }

    private func count(_ outcomes: [WarmOutcome], of batch: DistinctMembers) {
        for index in batch.positions { metrics.warmMembers.increment(outcomes[index].label) }
    }
}
