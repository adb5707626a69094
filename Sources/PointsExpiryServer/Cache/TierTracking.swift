import EventLoop
import Logging
import RedisClient

/// Keeps one worker's tier coherent with Redis across replicas: Redis tracks every member key
/// (`pe:{…`, broadcast mode) for this worker's invalidation connection, and each change to a
/// member's answers hash — a fill, an invalidation, an expiry, an eviction, by any replica —
/// drops that member here; a FLUSHALL flushes. While the connection is down nothing can be
/// heard, so the tier stops answering (`LocalTier.trackingChanged`). Loop-confined.
final class TierTracking {
    private let listener: RedisInvalidationListener
    private let tier: LocalTier

    init(loop: Loop, redis: RedisConfiguration, tier: LocalTier, worker: Int, metrics: Metrics, logger: Logger) throws {
        self.tier = tier
        listener = try RedisInvalidationListener(loop: loop, configuration: redis, prefixes: [CacheKey.memberKeyPrefix], logger: logger)
        listener.onInvalidation = { [unowned tier] invalidation in
            switch invalidation {
            case .keys(let keys):
                for key in keys {
                    // Leases, fences and event marks share the prefix; only the answers matter here.
                    guard let member = CacheKey.member(answersKey: key) else { continue }
                    tier.drop(member: member)
                    metrics.localCache.invalidations.increment("member")
                }
            case .all:
                tier.flush()
                metrics.localCache.invalidations.increment("flush")
            }
        }
        listener.onTrackingChanged = { [unowned tier] tracking in
            tier.trackingChanged(tracking)
            metrics.localCache.setTracking(worker: worker, tracking)
            if tracking {
                logger.info("local tier on: Redis invalidations are heard", metadata: ["worker": "\(worker)"])
            } else {
                logger.info("local tier off until Redis invalidations are heard again; answering from Redis",
                            metadata: ["worker": "\(worker)"])
            }
        }
    }

    func start() { listener.start() }

    func close() { listener.close() }
}
