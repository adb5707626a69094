import Codecs
import EventLoop
import Logging
import RPC

/// `BatchGetMemberExpirations` (no side effects): up to 100 members through MemberAnswers at
/// once. Their Redis lookups leave in one write (hiredis pipelines what one loop turn sends), so
/// cached members cost one round trip; misses read concurrently, each through single-flight and
/// the budget. A member that fails, or has no answer by the reply deadline, fails alone.
final class BatchGetMemberExpirations: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/BatchGetMemberExpirations"
    let name = "BatchGetMemberExpirations"
    let hasNoSideEffects = true
    private let loop: Loop
    private let answers: MemberAnswers
    private let binary: BinaryAnswers
    private let logger: Logger
    private static let noAnswerInTime = RPCError(.deadlineExceeded, "no answer for this member within the call's deadline")

    init(loop: Loop, answers: MemberAnswers, binary: BinaryAnswers, logger: Logger) {
        self.loop = loop
        self.answers = answers
        self.binary = binary
        self.logger = logger
    }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: BatchGetMemberExpirationsRequest = decode(message, reply: reply) else { return }
        let batch = DistinctMembers(request.members)
        let directives = CacheDirectives(header: context.header("cache-control"))
        let replyBy = context.replyDeadline(now: loop.monotonicMilliseconds)
        let gather = MemberGather<Result<MemberAnswer, RPCError>>(count: batch.members.count, missing: .failure(Self.noAnswerInTime)) {
            [binary, logger] results in
            let body = switch context.codec {
            case .json: batchResponseJSON(batch, results: results, expiringBefore: request.expiringBefore)
            case .proto: batchResponseMessage(batch, results: results) { answer, member throws(RPCError) in
                do throws(RPCError) {
                    return try binary.body(answer, campaign: request.campaign, member: member, expiringBefore: request.expiringBefore)
                } catch {
                    // That member fails alone, as `internal`; a fault of ours, so it is logged.
                    logger.error("a cached answer could not be made binary", metadata: ["member": "\(member)", "error": "\(error.message)"])
                    throw error
                }
            }.protoBytes
            }
            reply(.success(UnaryReply(body: body)))
        }
        for (index, member) in batch.members.enumerated() {
            if let problem = memberProblem(member) {
                gather.deliver(.failure(problem), at: index)
                continue
            }
            answers.answer(campaign: request.campaign, member: member, directives: directives, deadline: replyBy,
                           record: context.record) { result in
                context.record.noteCache(result)
                gather.deliver(result, at: index)
            }
        }
        gather.finish(by: replyBy, on: loop, logger: logger)
    }
}
