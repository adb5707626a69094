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
                fetch(request, store: true, reply: reply)
            case .unavailable(let error):
                metrics.cacheUnavailable.increment()
                logger.debug("cache unavailable; asking Voucherify", metadata: ["error": "\(error)"])
                fetch(request, store: false, reply: reply)
            }
        }
    }

    private func fetch(_ request: GetMemberExpirationRequest, store: Bool, reply: @escaping (Result<UnaryReply, ExpiryError>) -> Void) {
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
                if store, notAfter != nil {
                    cache.store(campaign: request.campaign, member: request.member, answer: answer, now: fetchedAt)
                }
                reply(.success(UnaryReply(body: answer.responseBody(expiringBefore: request.expiringBefore),
                                          headers: [("x-cache", "miss"), ("age", "0")])))
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
