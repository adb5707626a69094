import ExpiryCore
import Logging

public enum CacheLookup {
    case hit(CachedAnswer)
    case miss
    /// Redis could not answer; the caller goes to Voucherify instead.
    case unavailable(RedisError)
}

/// Cached answers per (campaign as given, member) in Redis. The entry's Redis TTL ends at the
/// answer's `notAfter`, and a read re-checks it, so an answer is never served past that instant.
public final class MemberCache {
    private let redis: RedisConnection
    private let logger: Logger
    private static let get = Array("GET".utf8)
    private static let set = Array("SET".utf8)
    private static let expireMilliseconds = Array("PX".utf8)

    public init(redis: RedisConnection, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    public var isAvailable: Bool { redis.isConnected }

    public func lookup(campaign: String, member: String, completion: @escaping (CacheLookup) -> Void) {
        redis.send([Self.get, Array(CacheKey.entry(campaign: campaign, member: member).utf8)]) { [self] result in
            switch result {
            case .failure(let error):
                completion(.unavailable(error))
            case .success(.bulk(let bytes)):
                guard let answer = try? CachedAnswer(serialized: bytes) else {
                    logger.warning("unreadable cache entry; treating as a miss", metadata: ["bytes": "\(bytes.count)"])
                    return completion(.miss)
                }
                // Redis expires the entry at notAfter too; this guards replies that crossed it in flight.
                completion(answer.notAfter.millisecondsSince1970 > self.redis.nowMilliseconds ? .hit(answer) : .miss)
            case .success(.error(let message)):
                completion(.unavailable(.server(message)))
            case .success:
                completion(.miss)
            }
        }
    }

    /// Stores `answer` until its `notAfter`; does nothing when that is not in the future.
    public func store(campaign: String, member: String, answer: CachedAnswer, now: Timestamp) {
        let lifetime = answer.notAfter.millisecondsSince1970 - now.millisecondsSince1970
        guard lifetime > 0 else { return }
        let key = Array(CacheKey.entry(campaign: campaign, member: member).utf8)
        redis.send([Self.set, key, answer.serialized(), Self.expireMilliseconds, Array(String(lifetime).utf8)]) { [logger] result in
            switch result {
            case .success(.error(let message)): logger.warning("cache write rejected", metadata: ["error": "\(message)"])
            case .failure(let error): logger.debug("cache write failed", metadata: ["error": "\(error)"])
            case .success: break
            }
        }
    }
}
