import Codecs
import ExpiryDomain
import Logging
import RedisClient
import Voucherify

/// What Redis holds for one member and campaign spelling. Whether it may be served is the
/// policy's call (`MemberAnswerPolicy`), not the cache's.
enum CacheLookup {
    case found(CacheEntry)
    case absent
    /// Redis could not answer (logged here); the caller reads Voucherify without the cache.
    case unavailable
}

/// What a refill saw of the member's generation before it asked Voucherify: a unique token. The
/// refill may store its answer only while the token is unchanged; every invalidation replaces it,
/// and a token that disappeared (expiry, eviction) never matches, so the fence fails safe. (It
/// cannot survive Redis losing an acknowledged write, e.g. a failover before replication.)
struct CacheFence: Equatable, Sendable {
    let token: [UInt8]
}

/// The right to read one member and campaign spelling from Voucherify for the whole fleet.
struct ReadLease: Equatable, Sendable {
    let token: [UInt8]
    let fence: CacheFence
    /// The claim created the member's generation token (there was none): the read removes it
    /// again unless Voucherify confirms the member, so unknown names leave no token behind.
    let fenceIsNew: Bool
}

/// What trying to take the read lease found.
enum LeaseClaim {
    /// This worker reads; store with the fence, then release.
    case claimed(ReadLease)
    /// A record other than the one the caller saw is there now: someone filled it.
    case filled(CacheEntry, stamp: [UInt8])
    /// A record is there that cannot be decoded; claim again past it (with this stamp as seen).
    case unreadable(stamp: [UInt8])
    /// Another worker or replica is reading; it ends within `remainingMilliseconds`.
    case held(remainingMilliseconds: Int64)
    /// The last read failed moments ago; do not ask again until the marker expires.
    case failedRecently(VoucherifyError)
    /// Redis could not answer.
    case unavailable
}

/// What an invalidation did.
enum InvalidationOutcome: Equatable, Sendable {
    case dropped
    case nothingCached
    /// The event was already handled for this member; nothing was touched.
    case alreadyHandled
}

/// Cached records per member in Redis: one hash per member, one field per campaign spelling as
/// callers asked. The hash lives as long as its longest-kept field; the reader re-checks each
/// field's own windows and deduction instant (`MemberAnswerPolicy`).
///
/// Single-flight: a read of one member and campaign spelling holds a lease key for the whole
/// fleet (`claimLease`); others wait for its fill. Fencing: `invalidate` deletes the hash and
/// replaces the member's generation token in one script; the lease hands the reader the token,
/// and `finishRead` stores only while it is unchanged. So a refill that started before an
/// acknowledged invalidation can never write its answer back, whatever campaign spelling it
/// used. A member's keys share a hash tag, so each script touches one Redis Cluster slot.
final class MemberCache {
    private let redis: RedisConnection
    private let logger: Logger
    private static let hget = Array("HGET".utf8)
    private static let eval = Array("EVAL".utf8)
    private static let twoKeys = Array("2".utf8)
    private static let threeKeys = Array("3".utf8)
    private static let yes = Array("1".utf8)
    private static let no = Array("0".utf8)

    /// How long a read lease lives: longer than any read (`MemberAnswers` ends reads before it),
    /// short enough that a dead holder's members are read again soon.
    static let leaseMilliseconds: Int64 = 10_000
    private static let leaseLifetime = Array(String(leaseMilliseconds).utf8)
    /// How long a generation token lives after its last use: twice the longest read, so a refill
    /// always finds its own token; a refill outliving it just does not store. A read that created
    /// the token removes it when Voucherify did not confirm the member (not found, or failed), so
    /// a name nobody knows leaves at most its negative answer in Redis.
    private static let generationLifetime = Array(String(2 * leaseMilliseconds).utf8)
    /// How long a handled webhook event is remembered. Voucherify retries a failed delivery for
    /// about a day; a redelivery after this only repeats an idempotent invalidation.
    private static let handledEventLifetime = Array(String(24 * 3_600_000).utf8)

    // EVAL, not EVALSHA: both run from Redis' script cache; EVAL needs no NOSCRIPT round trip after
    // a Redis restart, and these scripts run on misses and invalidations only, never on a hit.

    /// KEYS: answers, lease, generation. ARGV: campaign field, the fetchedAt stamp the caller saw
    /// (8 bytes or empty), a new lease token, lease ms, a new generation token, generation ms.
    /// A record of another format (an older release's) counts as absent: it is read again.
    /// One round trip that either reports a fill the caller has not seen, reports the lease's
    /// holder (a token or a failure marker) with its time left, or takes the lease and returns the
    /// generation token to fence the read with (plain Lua rather than SET NX GET: Redis 6 too).
    private static let claimLease = Array("""
        local record = redis.call('HGET', KEYS[1], ARGV[1])
        local kind = record and string.sub(record, 1, 3)
        if (kind == 'pe2' or kind == 'pn2') and string.sub(record, 4, 11) ~= ARGV[2] then return {'filled', record} end
        local holder = redis.call('GET', KEYS[2])
        if holder then return {'held', holder, redis.call('PTTL', KEYS[2])} end
        redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
        local generation = redis.call('GET', KEYS[3])
        if generation then
            redis.call('PEXPIRE', KEYS[3], ARGV[6])
        else
            generation = ARGV[5]
            redis.call('SET', KEYS[3], generation, 'PX', ARGV[6])
        end
        return {'claimed', generation}
        """.utf8)

    /// KEYS: answers, lease, generation. ARGV: lease token, generation token, campaign field,
    /// record (empty: store nothing), record lifetime ms, failure marker (empty: none), marker ms,
    /// '1' to remove the generation token if it is still this read's.
    /// Stores the record only while the generation is unchanged, then releases the lease if this
    /// reader still holds it — or leaves the failure marker in its place. Returns 1 if stored.
    /// (Removing a token another spelling's read also holds only makes that read not store.)
    private static let finishRead = Array("""
        local stored = 0
        local unchanged = redis.call('GET', KEYS[3]) == ARGV[2]
        if ARGV[4] ~= '' and unchanged then
            redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
            if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
            stored = 1
        end
        if ARGV[8] == '1' and unchanged then redis.call('DEL', KEYS[3]) end
        if redis.call('GET', KEYS[2]) == ARGV[1] then
            if ARGV[6] ~= '' then redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[7]) else redis.call('DEL', KEYS[2]) end
        end
        return stored
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
                guard let entry = try? CacheEntry(serialized: bytes) else {
                    logger.warning("unreadable cache entry; treating as absent", metadata: ["bytes": "\(bytes.count)"])
                    return completion(.absent)
                }
                completion(.found(entry))
            case .success(.error):
                logger.debug("cache unavailable; asking Voucherify", metadata: ["reason": "\(logger.summarise(result))"])
                completion(.unavailable)
            case .success:
                completion(.absent)
            }
        }
    }

    /// Takes the read lease unless a record with a stamp other than `seenStamp` is there (a fill
    /// to use) or someone holds it (wait, or share its failure).
    func claimLease(campaign: String, member: String, seenStamp: [UInt8], completion: @escaping (LeaseClaim) -> Void) {
        let token = Self.newToken()
        let newGeneration = Self.newToken()
        redis.send([Self.eval, Self.claimLease, Self.threeKeys, Array(CacheKey.answers(member: member).utf8),
                    Array(CacheKey.lease(member: member, campaign: campaign).utf8), Array(CacheKey.generation(member: member).utf8),
                    Array(campaign.utf8), seenStamp, token, Self.leaseLifetime, newGeneration, Self.generationLifetime]) { [logger] result in
            guard case .success(.array(let items)) = result, case .bulk(let kind)? = items.first else {
                logger.debug("lease unavailable; reading without the cache", metadata: ["reason": "\(logger.summarise(result))"])
                return completion(.unavailable)
            }
            switch (String(decoding: kind, as: UTF8.self), items.count > 1 ? items[1] : .null) {
            case ("filled", .bulk(let record)):
                guard let entry = try? CacheEntry(serialized: record) else {
                    logger.warning("unreadable cache entry; reading it again", metadata: ["bytes": "\(record.count)"])
                    return completion(.unreadable(stamp: Array(CacheEntry.stamp(of: record))))
                }
                completion(.filled(entry, stamp: Array(CacheEntry.stamp(of: record))))
            case ("held", .bulk(let holder)):
                let remaining: Int64
                if items.count > 2, case .integer(let value) = items[2] { remaining = max(0, value) } else { remaining = 0 }
                if let failure = ReadFailureMarker.error(holder) {
                    completion(.failedRecently(failure))
                } else {
                    completion(.held(remainingMilliseconds: remaining))
                }
            case ("claimed", .bulk(let generation)):
                completion(.claimed(ReadLease(token: token, fence: CacheFence(token: generation), fenceIsNew: generation == newGeneration)))
            default:
                logger.warning("unexpected reply to the lease script", metadata: ["reason": "\(logger.summarise(result))"])
                completion(.unavailable)
            }
        }
    }

    /// Ends a read: stores `record` (for `lifetimeMilliseconds`) unless an invalidation fenced it
    /// off, and releases the lease, or marks it with `failure` for a moment.
    func finishRead(campaign: String, member: String, lease: ReadLease, record: CacheEntry?, lifetimeMilliseconds: Int64,
                    failure: VoucherifyError?) {
        let marker = failure.flatMap(ReadFailureMarker.init)
        var confirmsMember = false
        if case .answer? = record { confirmsMember = true }
        let dropFence = lease.fenceIsNew && !confirmsMember
        redis.send([Self.eval, Self.finishRead, Self.threeKeys, Array(CacheKey.answers(member: member).utf8),
                    Array(CacheKey.lease(member: member, campaign: campaign).utf8), Array(CacheKey.generation(member: member).utf8),
                    lease.token, lease.fence.token, Array(campaign.utf8), record?.serialized() ?? [], Array(String(lifetimeMilliseconds).utf8),
                    marker?.value ?? [], Array(String(marker?.milliseconds ?? 0).utf8), dropFence ? Self.yes : Self.no]) { [logger] result in
            switch result {
            case .success(.integer(0)) where record != nil:
                logger.debug("refill fenced off by an invalidation; not stored", metadata: ["member": "\(member)"])
            case .success(.integer): break
            case .success(.error): logger.warning("cache write rejected", metadata: ["reason": "\(logger.summarise(result))"])
            case .success, .failure: logger.debug("cache write failed", metadata: ["reason": "\(logger.summarise(result))"])
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
        redis.send(arguments) { [logger] result in
            switch result {
            case .success(.integer(-1)): completion(.success(.alreadyHandled))
            case .success(.integer(0)): completion(.success(.nothingCached))
            case .success(.integer): completion(.success(.dropped))
            case .success(.error(let message)):
                // Callers show the error's description, a summary; the raw reply is logged here.
                _ = logger.summarise(result)
                completion(.failure(.server(message)))
            case .success:
                _ = logger.summarise(result)
                completion(.failure(.server("unexpected reply")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    /// 128 random bits as hex: unique per fence creation, per invalidation, per export lease.
    static func newToken() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return Array(Hex.lowercase((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }).utf8)
    }
}

/// What a failed read leaves in its lease for a moment, so the fleet backs off instead of
/// repeating it: `!u` (Voucherify unavailable, for 1 s) or `!r<seconds>` (rate limited, with
/// the announced wait, kept at most 5 s here: the rate budget holds the longer, fleet-wide
/// block). Lease tokens are hex, so a marker can never be mistaken for one.
struct ReadFailureMarker {
    let value: [UInt8]
    let milliseconds: Int64

    init?(_ error: VoucherifyError) {
        switch error {
        case .rateLimited(let seconds):
            let retryAfter = max(seconds ?? 1, 1)
            value = Array("!r\(retryAfter)".utf8)
            milliseconds = Int64(min(retryAfter, 5)) * 1000
        case .unavailable, .malformed:
            value = Array("!u".utf8)
            milliseconds = 1000
        case .campaignNotFound, .memberNotFound, .rejectedCredentials, .rejectedRequest:
            return nil
        }
    }

    /// The failure a marker stands for; nil for a lease token.
    static func error(_ holder: [UInt8]) -> VoucherifyError? {
        guard holder.first == UInt8(ascii: "!") else { return nil }
        if holder.starts(with: "!r".utf8) {
            let seconds = Int(String(decoding: holder.dropFirst(2), as: UTF8.self)) ?? 1
            return .rateLimited(retryAfterSeconds: min(max(seconds, 1), RateLimitHeaders.maxRetryAfterSeconds))
        }
        return .unavailable("another read of this member failed moments ago; retrying shortly")
    }
}
