import Codecs
import ExpiryDomain
import Logging
import RedisClient

/// What Redis holds for one member and campaign spelling. Whether it may be served is the
/// policy's call (`MemberAnswerPolicy`), not the cache's.
enum CacheLookup {
    case found(CachedAnswer)
    case absent
    /// Redis could not answer (logged here); the caller goes to Voucherify instead.
    case unavailable
}

/// What a refill saw of the member's generation before it asked Voucherify: a unique token. The
/// refill may store its answer only while the token is unchanged; every invalidation replaces it,
/// and a token that disappeared (expiry, eviction) never matches, so the fence fails safe. (It
/// cannot survive Redis losing an acknowledged write, e.g. a failover before replication.)
struct CacheFence: Equatable, Sendable {
    let token: [UInt8]
}

/// What an invalidation did.
enum InvalidationOutcome: Equatable, Sendable {
    case dropped
    case nothingCached
    /// The event was already handled for this member; nothing was touched.
    case alreadyHandled
}

/// Cached answers per member in Redis: one hash per member, one field per campaign spelling as
/// callers asked. The hash lives until the latest field's `notAfter`; the reader re-checks each
/// field's own (`MemberAnswerPolicy`), so an answer is never served past that instant.
///
/// Fencing: `invalidate` deletes the hash and replaces the member's generation token in one
/// script; `store` writes only if the token still equals the one `fence` returned before the
/// fetch, in one script. So a refill that started before an acknowledged invalidation can never
/// write its answer back, whatever campaign spelling it used. A member's keys share a hash tag.
final class MemberCache {
    private let redis: RedisConnection
    private let logger: Logger
    private static let hget = Array("HGET".utf8)
    private static let eval = Array("EVAL".utf8)
    private static let oneKey = Array("1".utf8)
    private static let twoKeys = Array("2".utf8)
    private static let threeKeys = Array("3".utf8)

    /// How long a generation token lives after its last use: far longer than any refill runs
    /// (each upstream page times out in seconds), short enough that tokens of members nobody
    /// asks for again go away soon. A refill outliving its token just does not store.
    private static let generationLifetime = Array(String(10 * 60_000).utf8)
    /// How long a handled webhook event is remembered. Voucherify retries a failed delivery for
    /// about a day; a redelivery after this only repeats an idempotent invalidation.
    private static let handledEventLifetime = Array(String(24 * 3_600_000).utf8)

    // EVAL, not EVALSHA: both run from Redis' script cache; EVAL needs no NOSCRIPT round trip after
    // a Redis restart, and these scripts run on misses and invalidations only, never on a hit.

    /// KEYS: generation. ARGV: a new token, its lifetime ms. Returns the current token, creating
    /// it when absent (plain Lua rather than SET NX GET, which needs Redis 7).
    private static let readOrCreateToken = Array("""
        local token = redis.call('GET', KEYS[1])
        if token then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return token
        end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return ARGV[1]
        """.utf8)

    /// KEYS: answers, generation. ARGV: token from `fence`, campaign field, value, lifetime ms.
    private static let fencedStore = Array("""
        if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
        if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
        return 1
        """.utf8)

    /// KEYS: answers, generation, handled-event mark (optional). ARGV: new token, its lifetime ms,
    /// mark lifetime ms. Returns -1 for an event already handled, else 1 if answers were dropped.
    /// The token is replaced first: Redis does not roll back a script that fails midway (e.g. out
    /// of memory), and a fence without a delete is harmless where a delete without a fence is not.
    private static let invalidateAndFence = Array("""
        if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
        redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
        local dropped = redis.call('DEL', KEYS[1])
        if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
        return dropped
        """.utf8)

    init(redis: RedisConnection, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    func lookup(campaign: String, member: String, completion: @escaping (CacheLookup) -> Void) {
        redis.send([Self.hget, Array(CacheKey.answers(member: member).utf8), Array(campaign.utf8)]) { [self] result in
            switch result {
            case .failure(let error):
                logger.debug("cache unavailable; asking Voucherify", metadata: ["error": "\(error)"])
                completion(.unavailable)
            case .success(.bulk(let bytes)):
                guard let answer = try? CachedAnswer(serialized: bytes) else {
                    logger.warning("unreadable cache entry; treating as absent", metadata: ["bytes": "\(bytes.count)"])
                    return completion(.absent)
                }
                completion(.found(answer))
            case .success(.error(let message)):
                logger.debug("cache unavailable; asking Voucherify", metadata: ["error": "\(message)"])
                completion(.unavailable)
            case .success:
                completion(.absent)
            }
        }
    }

    /// The member's generation token; call before asking Voucherify, store with the result.
    func fence(member: String, completion: @escaping (Result<CacheFence, RedisError>) -> Void) {
        redis.send([Self.eval, Self.readOrCreateToken, Self.oneKey, Array(CacheKey.generation(member: member).utf8),
                    Self.newToken(), Self.generationLifetime]) { result in
            switch result {
            case .success(.bulk(let token)): completion(.success(CacheFence(token: token)))
            case .success(.error(let message)): completion(.failure(.server(message)))
            case .success(let other): completion(.failure(.server("unexpected reply to the fence script: \(other)")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    /// Stores `answer` under `campaign` until its `notAfter`, unless the member was invalidated
    /// since `fence` was read; does nothing when `notAfter` is not in the future.
    func store(campaign: String, member: String, answer: CachedAnswer, now: Timestamp, fence: CacheFence) {
        let lifetime = answer.notAfter.millisecondsSince1970 - now.millisecondsSince1970
        guard lifetime > 0 else { return }
        redis.send([Self.eval, Self.fencedStore, Self.twoKeys,
                    Array(CacheKey.answers(member: member).utf8), Array(CacheKey.generation(member: member).utf8),
                    fence.token, Array(campaign.utf8), answer.serialized(), Array(String(lifetime).utf8)]) { [logger] result in
            switch result {
            case .success(.integer(0)): logger.debug("refill fenced off by an invalidation; not stored", metadata: ["member": "\(member)"])
            case .success(.error(let message)): logger.warning("cache write rejected", metadata: ["error": "\(message)"])
            case .failure(let error): logger.debug("cache write failed", metadata: ["error": "\(error)"])
            case .success: break
            }
        }
    }

    /// Drops the member's answers under every campaign spelling and fences refills in flight, in
    /// one atomic step. With `eventID`, an event already handled is reported and nothing is touched.
    func invalidate(member: String, eventID: String?, completion: @escaping (Result<InvalidationOutcome, RedisError>) -> Void) {
        var arguments = [Self.eval, Self.invalidateAndFence, eventID == nil ? Self.twoKeys : Self.threeKeys,
                         Array(CacheKey.answers(member: member).utf8), Array(CacheKey.generation(member: member).utf8)]
        if let eventID { arguments.append(Array(CacheKey.handledEvent(member: member, eventID: eventID).utf8)) }
        arguments += [Self.newToken(), Self.generationLifetime, Self.handledEventLifetime]
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

    /// 128 random bits as hex: unique per fence creation and per invalidation.
    private static func newToken() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return Array(Hex.lowercase((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }).utf8)
    }
}
