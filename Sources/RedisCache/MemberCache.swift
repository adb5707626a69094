import ExpiryCore
import Logging

public enum CacheLookup {
    case hit(CachedAnswer)
    case miss
    /// Redis could not answer; the caller goes to Voucherify instead.
    case unavailable(RedisError)
}

/// What a refill saw of the member's generation before it asked Voucherify. The refill may store
/// its answer only while the generation is unchanged: an invalidation in between bumps it.
public struct CacheFence: Equatable, Sendable {
    /// The generation's value; empty when the member was never invalidated (or that has expired).
    let generation: [UInt8]
}

/// What an invalidation did under one campaign spelling.
public enum InvalidationOutcome: Equatable, Sendable {
    case dropped
    case nothingCached
    /// The event was already handled for this member and spelling; nothing was touched.
    case alreadyHandled
}

/// Cached answers per (campaign as given, member) in Redis. The entry's Redis TTL ends at the
/// answer's `notAfter`, and a read re-checks it, so an answer is never served past that instant.
///
/// Fencing: `invalidate` deletes the entry and bumps the member's generation in one script;
/// `store` writes only if the generation still equals the one read before the fetch
/// (`fence`), in one script. So a refill that started before an acknowledged invalidation can
/// never write its answer back. Entry, generation and event marks share a hash tag (one slot).
public final class MemberCache {
    private let redis: RedisConnection
    private let logger: Logger
    private static let get = Array("GET".utf8)
    private static let eval = Array("EVAL".utf8)
    private static let twoKeys = Array("2".utf8)
    private static let threeKeys = Array("3".utf8)

    /// How long a bumped generation is kept: far longer than any refill can run (each upstream page
    /// times out in seconds), short enough not to keep keys for members never invalidated again.
    private static let generationLifetime = Array(String(24 * 3_600_000).utf8)
    /// How long a handled webhook event is remembered. Voucherify retries a failed delivery for
    /// about a day; a redelivery after this only repeats an idempotent invalidation.
    private static let handledEventLifetime = Array(String(24 * 3_600_000).utf8)

    // EVAL, not EVALSHA: both run from Redis' script cache; EVAL needs no NOSCRIPT round trip after
    // a Redis restart, and these scripts run on misses and invalidations only, never on a hit.

    /// KEYS: entry, generation. ARGV: generation seen by `fence` ("" = none), value, lifetime ms.
    private static let fencedSet = Array("""
        if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
        return 1
        """.utf8)

    /// KEYS: entry, generation, handled-event mark (optional). ARGV: generation lifetime ms, mark
    /// lifetime ms. Returns -1 for an event already handled, else how many entries were dropped.
    private static let invalidateAndFence = Array("""
        if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
        local dropped = redis.call('DEL', KEYS[1])
        redis.call('INCR', KEYS[2])
        redis.call('PEXPIRE', KEYS[2], ARGV[1])
        if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[2]) end
        return dropped
        """.utf8)

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

    /// Reads the member's generation; call before asking Voucherify, store with the result.
    public func fence(campaign: String, member: String, completion: @escaping (Result<CacheFence, RedisError>) -> Void) {
        redis.send([Self.get, Array(CacheKey.generation(campaign: campaign, member: member).utf8)]) { result in
            switch result {
            case .success(.bulk(let generation)): completion(.success(CacheFence(generation: generation)))
            case .success(.null): completion(.success(CacheFence(generation: [])))
            case .success(.error(let message)): completion(.failure(.server(message)))
            case .success(let other): completion(.failure(.server("unexpected reply to GET: \(other)")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    /// Stores `answer` until its `notAfter`, unless the member was invalidated since `fence` was
    /// read; does nothing when `notAfter` is not in the future.
    public func store(campaign: String, member: String, answer: CachedAnswer, now: Timestamp, fence: CacheFence) {
        let lifetime = answer.notAfter.millisecondsSince1970 - now.millisecondsSince1970
        guard lifetime > 0 else { return }
        redis.send([Self.eval, Self.fencedSet, Self.twoKeys,
                    Array(CacheKey.entry(campaign: campaign, member: member).utf8),
                    Array(CacheKey.generation(campaign: campaign, member: member).utf8),
                    fence.generation, answer.serialized(), Array(String(lifetime).utf8)]) { [logger] result in
            switch result {
            case .success(.integer(0)): logger.debug("refill fenced off by an invalidation; not stored", metadata: ["member": "\(member)"])
            case .success(.error(let message)): logger.warning("cache write rejected", metadata: ["error": "\(message)"])
            case .failure(let error): logger.debug("cache write failed", metadata: ["error": "\(error)"])
            case .success: break
            }
        }
    }

    /// Drops the member's entry under this campaign spelling and fences refills in flight, in one
    /// atomic step. With `eventID`, an event already handled here is reported and nothing is touched.
    public func invalidate(campaign: String, member: String, eventID: String?,
                           completion: @escaping (Result<InvalidationOutcome, RedisError>) -> Void) {
        var arguments = [Self.eval, Self.invalidateAndFence, eventID == nil ? Self.twoKeys : Self.threeKeys,
                         Array(CacheKey.entry(campaign: campaign, member: member).utf8),
                         Array(CacheKey.generation(campaign: campaign, member: member).utf8)]
        if let eventID { arguments.append(Array(CacheKey.handledEvent(campaign: campaign, member: member, eventID: eventID).utf8)) }
        arguments += [Self.generationLifetime, Self.handledEventLifetime]
        redis.send(arguments) { result in
            switch result {
            case .success(.integer(-1)): completion(.success(.alreadyHandled))
            case .success(.integer(0)): completion(.success(.nothingCached))
            case .success(.integer): completion(.success(.dropped))
            case .success(.error(let message)): completion(.failure(.server(message)))
            case .success(let other): completion(.failure(.server("unexpected reply to the invalidation script: \(other)")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }
}
