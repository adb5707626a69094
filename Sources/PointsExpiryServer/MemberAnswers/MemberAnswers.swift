import EventLoop
import ExpiryDomain
import Logging
import RPC
import Voucherify

/// One member's answer, with where it came from.
struct MemberAnswer {
    enum Source: String {
        case hit
        case miss
    }

    let answer: CachedAnswer
    let source: Source
    let ageSeconds: Int64

    /// `x-cache` and `age`, as every RPC that answers a member sends them.
    var cacheHeaders: [(name: String, value: String)] { [("x-cache", source.rawValue), ("age", String(ageSeconds))] }
}

/// The resolver every member-reading RPC goes through: Redis first, then (fenced) Voucherify,
/// as `MemberAnswerPolicy` decides. This thin half does the I/O; the rules live in the policy.
/// Loop-confined: one per worker.
final class MemberAnswers {
    private let loop: Loop
    private let cache: MemberCache
    private let voucherify: VoucherifyAPI
    private let policy: MemberAnswerPolicy
    private let lifecycle: WorkerLifecycle
    private let metrics: Metrics
    private let logger: Logger

    init(loop: Loop, cache: MemberCache, voucherify: VoucherifyAPI, policy: MemberAnswerPolicy, lifecycle: WorkerLifecycle,
         metrics: Metrics, logger: Logger) {
        self.loop = loop
        self.cache = cache
        self.voucherify = voucherify
        self.policy = policy
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.logger = logger
    }

    private var now: Timestamp { Timestamp(millisecondsSince1970: loop.nowMilliseconds) }

    /// The answer for `member` under `campaign` as the caller spelled it. Completes once, on the loop.
    func answer(campaign: String, member: String, completion: @escaping (Result<MemberAnswer, RPCError>) -> Void) {
        loop.assertInLoop()
        cache.lookup(campaign: campaign, member: member) { [self] lookup in
            switch policy.decide(lookup, now: now) {
            case .serve(let answer, let age):
                metrics.cacheHits.increment()
                completion(.success(MemberAnswer(answer: answer, source: .hit, ageSeconds: age)))
            case .readThroughWithoutStore:
                metrics.cacheUnavailable.increment()
                readThrough(campaign: campaign, member: member, fence: nil, completion: completion)
            case .readThrough:
                metrics.cacheMisses.increment()
                // The generation is read before Voucherify is asked: an invalidation acknowledged
                // after this point makes the store a no-op.
                cache.fence(member: member) { [self] fence in
                    if case .failure(let error) = fence {
                        logger.debug("cache fence unreadable; answer will not be stored", metadata: ["error": "\(error)"])
                    }
                    readThrough(campaign: campaign, member: member, fence: try? fence.get(), completion: completion)
                }
            }
        }
    }

    /// Asks Voucherify; stores the answer only with a `fence` (read before the read began).
    private func readThrough(campaign: String, member: String, fence: CacheFence?,
                             completion: @escaping (Result<MemberAnswer, RPCError>) -> Void) {
        guard !lifecycle.stopped else { return completion(.failure(RPCError(.unavailable, "the service is shutting down"))) }
        voucherify.fetchMemberBuckets(campaign: campaign, member: member, deadline: loop.monotonicMilliseconds + 10_000,
                                      admission: UnlimitedAdmission()) { [self] result in
            switch result {
            case .failure(let error):
                metrics.upstreamFailures.increment()
                completion(.failure(error.rpcError(campaign: campaign, member: member)))
            case .success(let buckets):
                metrics.upstreamSuccesses.increment()
                let fetchedAt = now
                let expiration = MemberExpiration(campaign: campaign, member: member, buckets: buckets, fetchedAt: fetchedAt)
                // One encoding serves both the cache entry and this response.
                let (answer, storable) = policy.record(for: expiration)
                if let fence, storable {
                    cache.store(campaign: campaign, member: member, answer: answer, now: fetchedAt, fence: fence)
                }
                completion(.success(MemberAnswer(answer: answer, source: .miss, ageSeconds: 0)))
            }
        }
    }
}
