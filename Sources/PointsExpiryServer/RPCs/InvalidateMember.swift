import Codecs
import RPC

/// `InvalidateMember`: the webhook's invalidation path, for callers that know a member changed.
/// Card codes are unique within a Voucherify project, so the member's answers go under every
/// campaign spelling, not only the one named.
final class InvalidateMember: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/InvalidateMember"
    let name = "InvalidateMember"
    let hasNoSideEffects = false
    private let cache: MemberCache

    init(cache: MemberCache) { self.cache = cache }

    func call(_ message: JSONValue, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: InvalidateMemberRequest = decode(message, reply: reply) else { return }
        cache.invalidate(member: request.member, eventID: nil) { result in
            switch result {
            case .success(let outcome):
                reply(.success(UnaryReply(body: InvalidateMemberRequest.responseBody(invalidated: outcome == .dropped))))
            case .failure(let error):
                reply(.failure(.cacheUnavailable(error.description)))
            }
        }
    }
}
