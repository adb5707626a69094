import EventLoop
import ExpiryCore
import Logging
import RedisCache
import VoucherifyClient

/// `GetMemberExpiration`: Redis first; on a miss (or with Redis down) Voucherify, simplified,
/// stored until the next deduction instant or the TTL, whichever is sooner.
final class GetMemberExpiration: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"
    let name = "GetMemberExpiration"
    let hasNoSideEffects = true

    private let loop: Loop
    private let cache: MemberCache
    private let voucherify: VoucherifyAPI
    private let schedule: DeductionSchedule
    private let cacheTTLSeconds: Int
    private let lifecycle: WorkerLifecycle
    private let metrics: Metrics
    private let logger: Logger

    init(loop: Loop, cache: MemberCache, voucherify: VoucherifyAPI, schedule: DeductionSchedule, cacheTTLSeconds: Int,
         lifecycle: WorkerLifecycle, metrics: Metrics, logger: Logger) {
        self.loop = loop
        self.cache = cache
        self.voucherify = voucherify
        self.schedule = schedule
        self.cacheTTLSeconds = cacheTTLSeconds
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.logger = logger
    }

    private var now: Timestamp { Timestamp(millisecondsSince1970: loop.nowMilliseconds) }

    func call(_ message: JSONValue, reply: @escaping (Result<UnaryReply, ExpiryError>) -> Void) {
        let request: GetMemberExpirationRequest
        do {
            request = try GetMemberExpirationRequest(json: message)
        } catch {
            return reply(.failure(error))
        }
        cache.lookup(campaign: request.campaign, member: request.member) { [self] lookup in
            switch lookup {
            case .hit(let answer):
                metrics.cacheHits.increment()
                let age = max(0, (now.millisecondsSince1970 - answer.fetchedAt.millisecondsSince1970) / 1000)
                reply(.success(UnaryReply(body: answer.responseBody(expiringBefore: request.expiringBefore),
                                          headers: [("x-cache", "hit"), ("age", String(age))])))
            case .miss:
                metrics.cacheMisses.increment()
                // The generation is read before Voucherify is asked: an invalidation acknowledged
                // after this point makes the store below a no-op.
                cache.fence(member: request.member) { [self] fence in
                    if case .failure(let error) = fence {
                        logger.debug("cache fence unreadable; answer will not be stored", metadata: ["error": "\(error)"])
                    }
                    fetch(request, fence: try? fence.get(), reply: reply)
                }
            case .unavailable(let error):
                metrics.cacheUnavailable.increment()
                logger.debug("cache unavailable; asking Voucherify", metadata: ["error": "\(error)"])
                fetch(request, fence: nil, reply: reply)
            }
        }
    }

    /// Asks Voucherify; stores the answer only with a `fence` (read before the fetch began).
    private func fetch(_ request: GetMemberExpirationRequest, fence: CacheFence?, reply: @escaping (Result<UnaryReply, ExpiryError>) -> Void) {
        guard !lifecycle.stopped else { return reply(.failure(.upstreamUnavailable("the service is shutting down"))) }
        voucherify.fetchMemberBuckets(campaign: request.campaign, member: request.member) { [self] result in
            switch result {
            case .failure(let error):
                metrics.upstreamFailures.increment()
                reply(.failure(error))
            case .success(let buckets):
                metrics.upstreamSuccesses.increment()
                let fetchedAt = now
                let expiration = MemberExpiration(campaign: request.campaign, member: request.member, buckets: buckets, fetchedAt: fetchedAt)
                let notAfter = schedule.cacheNotAfter(fetchedAt: fetchedAt, earliestExpiry: expiration.earliestBucketExpiry,
                                                      maxTTLSeconds: cacheTTLSeconds)
                // One encoding serves both the cache entry and this response.
                let answer = CachedAnswer(expiration, notAfter: notAfter ?? fetchedAt)
                if let fence, notAfter != nil {
                    cache.store(campaign: request.campaign, member: request.member, answer: answer, now: fetchedAt, fence: fence)
                }
                reply(.success(UnaryReply(body: answer.responseBody(expiringBefore: request.expiringBefore),
                                          headers: [("x-cache", "miss"), ("age", "0")])))
            }
        }
    }
}

/// `InvalidateMember`: the webhook's invalidation path, for callers that know a member changed.
/// Card codes are unique within a Voucherify project, so the member's answers go under every
/// campaign spelling, not only the one named.
final class InvalidateMember: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/InvalidateMember"
    let name = "InvalidateMember"
    let hasNoSideEffects = false
    private let cache: MemberCache

    init(cache: MemberCache) { self.cache = cache }

    func call(_ message: JSONValue, reply: @escaping (Result<UnaryReply, ExpiryError>) -> Void) {
        let request: InvalidateMemberRequest
        do {
            request = try InvalidateMemberRequest(json: message)
        } catch {
            return reply(.failure(error))
        }
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

/// `grpc.health.v1.Health/Check` over Connect JSON: SERVING while this worker is not draining.
final class HealthCheck: UnaryMethod {
    let path = "/grpc.health.v1.Health/Check"
    let name = "HealthCheck"
    let hasNoSideEffects = true
    private let lifecycle: WorkerLifecycle

    init(lifecycle: WorkerLifecycle) { self.lifecycle = lifecycle }

    func call(_ message: JSONValue, reply: @escaping (Result<UnaryReply, ExpiryError>) -> Void) {
        let status = lifecycle.draining ? #"{"status":"NOT_SERVING"}"# : #"{"status":"SERVING"}"#
        reply(.success(UnaryReply(body: Array(status.utf8))))
    }
}
