import Codecs
import RPC

/// `GetMemberExpiration` (no side effects): one member's answer from MemberAnswers, with the
/// request's own `pointsExpiringBefore` appended.
final class GetMemberExpiration: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"
    let name = "GetMemberExpiration"
    let hasNoSideEffects = true
    private let answers: MemberAnswers

    init(answers: MemberAnswers) { self.answers = answers }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: GetMemberExpirationRequest = decode(message, reply: reply) else { return }
        answers.answer(campaign: request.campaign, member: request.member, directives: CacheDirectives(header: context.header("cache-control")),
                       deadline: context.deadline) { result in
            reply(result.flatMap { found in
                Result { () throws(RPCError) in
                    UnaryReply(body: try found.answer.responseBody(context.codec, expiringBefore: request.expiringBefore), headers: found.cacheHeaders)
                }
            })
        }
    }
}
