import APIMessages
import RPC

/// `InvalidateMember`: the webhook's invalidation path, for callers that know a member changed.
/// Card codes are unique within a Voucherify project, so the member's answers go under every
/// campaign spelling, not only the one named, in Redis and in every worker's tier of this replica
/// before the answer; other replicas' tiers hear it from Redis.
final class InvalidateMember: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/InvalidateMember"
    let name = "InvalidateMember"
    let hasNoSideEffects = false
    private let answers: MemberAnswers

    init(answers: MemberAnswers) { self.answers = answers }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: InvalidateMemberRequest = decode(message, reply: reply) else { return }
        answers.invalidate(member: request.member, eventID: nil) { result in
            switch result {
            case .success(let outcome):
                let invalidated = outcome == .dropped
                reply(.success(PointsExpiryServer.reply(context.codec, json: {
                    Array((invalidated ? #"{"invalidated":true}"# : #"{"invalidated":false}"#).utf8)
                }, proto: {
                    var message = Pointsexpiry_V1_InvalidateMemberResponse()
                    message.invalidated = invalidated
                    return message
                })))
            case .failure(let error):
                reply(.failure(.cacheUnavailable(error.description)))
            }
        }
    }
}
