import Codecs
import RPC

/// `GetMemberExpiration` (no side effects): one member's answer from MemberAnswers, with the
/// request's own `pointsExpiringBefore` appended.
final class GetMemberExpiration: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"
    let name = "GetMemberExpiration"
    let hasNoSideEffects = true
    private let answers: MemberAnswers
    private let binary: BinaryAnswers

    init(answers: MemberAnswers, binary: BinaryAnswers) {
        self.answers = answers
        self.binary = binary
    }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: GetMemberExpirationRequest = decode(message, reply: reply) else { return }
        answers.answer(campaign: request.campaign, member: request.member, directives: CacheDirectives(header: context.header("cache-control")),
                       deadline: context.deadline, record: context.record) { [binary] result in
            context.record.noteCache(result)
            reply(result.flatMap { found in
                Result { () throws(RPCError) in
                    let body = switch context.codec {
                    case .json: try found.answer.responseBody(.json, expiringBefore: request.expiringBefore)
                    case .proto: try binary.body(found.answer, campaign: request.campaign, member: request.member,
                                                 expiringBefore: request.expiringBefore)
                    }
                    return UnaryReply(body: body, headers: found.cacheHeaders, gzipMemo: found.gzipMemo)
                }
            })
        }
    }
}

extension RequestRecord {
    /// Notes how the cache served one member for the access log: hit, miss or stale, and
    /// `negative` for a not-found (cached or just read, as `points_expiry_cache_results_total`
    /// counts it). Other failures asked no cache.
    func noteCache(_ result: Result<MemberAnswer, RPCError>) {
        switch result {
        case .success(let found): noteCacheResult(found.source.rawValue)
        case .failure(let error) where error.code == .notFound: noteCacheResult("negative")
        case .failure: break
        }
    }
}
