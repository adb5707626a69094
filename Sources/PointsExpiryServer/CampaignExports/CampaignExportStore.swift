import ExpiryDomain
import Logging
import RedisClient

/// What Redis holds of one campaign's export, as a read sees it.
struct StoredExport {
    /// When the stored aggregate's export was asked of Voucherify (ms since 1970); nil: none yet.
    var generatedAt: Int64?
    /// The aggregate's first deduction instant after `generatedAt`, if any.
    var deductionDue: Int64?
    /// The aggregate itself; nil when the caller already holds the one of `generatedAt`.
    var aggregate: [UInt8]?
    /// The last export attempt failed; the next may start at this instant (ms). `failure`: why,
    /// in words for callers.
    var retryAt: Int64?
    var failure: String?
    /// Voucherify said the campaign does not exist, at this instant (ms).
    var notFoundAt: Int64?
    /// A job holds the campaign's lease right now (somewhere in the fleet).
    var jobRunning: Bool
}

/// What trying to start a campaign's export job came to.
enum ExportClaim: Equatable {
    /// This worker holds the lease.
    case claimed(LeaseGrant)
    /// Another job holds the lease.
    case held
    /// The stored aggregate is not due for a refresh.
    case fresh
    /// The last attempt failed moments ago; the next waits for its cooldown.
    case coolingDown
    /// Redis could not say.
    case unavailable
}

/// What a job holding the lease starts from.
struct LeaseGrant: Equatable {
    /// An export asked for earlier (by a job that died) and still worth following: poll it
    /// instead of asking for another. nil: ask for a new export.
    var resumeExportID: String?
    /// When that export was asked for (ms since 1970).
    var resumePostedAt: Int64 = 0
    /// Attempts that failed in a row before this one (for the next cooldown).
    var failures = 0
}

/// The Redis layout of campaign exports (`CacheKey.export…`) and the scripts that keep one job
/// per campaign in the fleet: a lease key held by a random token, renewed while the job runs, and
/// checked by every write the job makes, so a job that lost its lease (a long pause) never
/// overwrites a newer one's work. A campaign's keys share a hash tag, so each script touches one
/// Redis Cluster slot. Loop-confined (its connection's loop).
final class CampaignExportStore {
    private let redis: RedisConnection
    private let logger: Logger
    private static let eval = Array("EVAL".utf8)
    private static let oneKey = Array("1".utf8)
    private static let twoKeys = Array("2".utf8)
    private static let threeKeys = Array("3".utf8)
    /// Campaigns asked for within this window are refreshed in the background.
    static let registryWindowMilliseconds: Int64 = 7 * 86_400_000
    /// The most campaigns the background refresh keeps (the most recently asked for).
    static let maxRegisteredCampaigns = 1000

    /// KEYS: data, job, lease. ARGV: the generatedAt the caller holds ('' for none). One round
    /// trip for everything a read needs; the aggregate only when it changed.
    private static let readScript = Array("""
        local d = redis.call('HMGET', KEYS[1], 'generated_at', 'deduction_due')
        local aggregate = ''
        if d[1] and d[1] ~= ARGV[1] then aggregate = redis.call('HGET', KEYS[1], 'agg') or '' end
        local j = redis.call('HMGET', KEYS[2], 'retry_at', 'failure', 'not_found_at')
        return {d[1] or '', d[2] or '', aggregate, j[1] or '', j[2] or '', j[3] or '', redis.call('EXISTS', KEYS[3])}
        """.utf8)

    /// KEYS: data, job, lease. ARGV: token, lease ms, now ms, refresh ms, '1' to skip the
    /// freshness check (the stored aggregate is unreadable), resume window ms. Takes the lease
    /// only when no job holds it, the data is due (older than the refresh interval or past its
    /// deduction instant), and the last failure's cooldown is over; then hands over an export
    /// still worth following and the failures so far.
    private static let claimScript = Array("""
        if redis.call('EXISTS', KEYS[3]) == 1 then return {'held'} end
        local now = tonumber(ARGV[3])
        local d = redis.call('HMGET', KEYS[1], 'generated_at', 'deduction_due')
        if d[1] and ARGV[5] ~= '1' then
            local due = tonumber(d[1]) + tonumber(ARGV[4])
            if d[2] and d[2] ~= '' and tonumber(d[2]) < due then due = tonumber(d[2]) end
            if due > now then return {'fresh'} end
        end
        local j = redis.call('HMGET', KEYS[2], 'retry_at', 'export_id', 'posted_at', 'failures')
        if j[1] and now < tonumber(j[1]) then return {'cooling'} end
        redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
        local failures = j[4] or '0'
        if j[2] and j[3] and tonumber(j[3]) <= now and now - tonumber(j[3]) < tonumber(ARGV[6]) then return {'resume', failures, j[2], j[3]} end
        return {'claimed', failures}
        """.utf8)

    /// KEYS: lease. ARGV: token, lease ms. 1 while the token still holds the lease.
    private static let renewScript = Array("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """.utf8)

    /// KEYS: job, lease. ARGV: token, export id, posted-at ms, job ms. Remembers the export asked
    /// for, so that a successor follows it instead of asking again.
    private static let recordExportScript = Array("""
        if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'export_id', ARGV[2], 'posted_at', ARGV[3])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return 1
        """.utf8)

    /// KEYS: data, job, lease. ARGV: token, aggregate, generated-at ms, deduction-due ms (or ''),
    /// data ms, export id. Stores the aggregate unless a newer one is there (whoever wrote it:
    /// newer data is never replaced by older), forgets the export (nobody need follow it any
    /// more) and the failures, and releases the lease if the token still holds it. Returns 1 if
    /// stored.
    private static let saveScript = Array("""
        local current = redis.call('HGET', KEYS[1], 'generated_at')
        local stored = 0
        if not current or tonumber(current) < tonumber(ARGV[3]) then
            redis.call('HSET', KEYS[1], 'generated_at', ARGV[3], 'deduction_due', ARGV[4], 'agg', ARGV[2])
            redis.call('PEXPIRE', KEYS[1], ARGV[5])
            redis.call('HDEL', KEYS[2], 'retry_at', 'failure', 'failures', 'not_found_at')
            stored = 1
        end
        if redis.call('HGET', KEYS[2], 'export_id') == ARGV[6] then redis.call('HDEL', KEYS[2], 'export_id', 'posted_at') end
        if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
        return stored
        """.utf8)

    /// KEYS: job, lease. ARGV: token, now ms, reason, '1' if the campaign does not exist, '1' to
    /// keep following the export asked for, job ms, retry-at ms. Records a failed attempt (one
    /// more in a row) and when the next may start, and releases the lease.
    private static let failScript = Array("""
        if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'retry_at', ARGV[7], 'failure', ARGV[3])
        redis.call('HINCRBY', KEYS[1], 'failures', 1)
        if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'not_found_at', ARGV[2]) else redis.call('HDEL', KEYS[1], 'not_found_at') end
        if ARGV[5] ~= '1' then redis.call('HDEL', KEYS[1], 'export_id', 'posted_at') end
        redis.call('PEXPIRE', KEYS[1], ARGV[6])
        redis.call('DEL', KEYS[2])
        return 1
        """.utf8)

    init(redis: RedisConnection, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    /// Everything a GetCampaignExpiration needs from Redis, in one round trip. `heldGeneratedAt`:
    /// the aggregate the caller already decoded (it is then not sent again).
    func read(campaign: String, heldGeneratedAt: Int64?, completion: @escaping (Result<StoredExport, RedisError>) -> Void) {
        redis.send([Self.eval, Self.readScript, Self.threeKeys] + keys(campaign) + [heldGeneratedAt.map { Array(String($0).utf8) } ?? []]) {
            [logger] result in
            guard case .success(.array(let items)) = result, items.count == 7 else {
                return completion(.failure(Self.failure(result, logger: logger)))
            }
            let text = items.map { item -> String? in
                guard case .bulk(let bytes) = item, !bytes.isEmpty else { return nil }
                return String(decoding: bytes, as: UTF8.self)
            }
            var aggregate: [UInt8]?
            if case .bulk(let bytes) = items[2], !bytes.isEmpty { aggregate = bytes }
            var running = false
            if case .integer(let exists) = items[6] { running = exists == 1 }
            completion(.success(StoredExport(generatedAt: text[0].flatMap { Int64($0) }, deductionDue: text[1].flatMap { Int64($0) },
                                             aggregate: aggregate, retryAt: text[3].flatMap { Int64($0) }, failure: text[4],
                                             notFoundAt: text[5].flatMap { Int64($0) }, jobRunning: running)))
        }
    }

    /// Tries to take the campaign's lease for an export job (see `claimScript`); `force` skips
    /// the freshness check.
    func claim(campaign: String, token: [UInt8], timing: ExportTiming, now: Int64, force: Bool, completion: @escaping (ExportClaim) -> Void) {
        redis.send([Self.eval, Self.claimScript, Self.threeKeys] + keys(campaign)
            + [token, digits(timing.leaseMilliseconds), digits(now), digits(timing.refreshMilliseconds), force ? Self.oneKey : [],
               digits(timing.exportTimeoutMilliseconds)]) { [logger] result in
            guard case .success(.array(let items)) = result, case .bulk(let kind)? = items.first else {
                logger.debug("export lease unavailable", metadata: ["reason": "\(logger.summarise(result))"])
                return completion(.unavailable)
            }
            func text(_ index: Int) -> String? {
                guard index < items.count, case .bulk(let bytes) = items[index] else { return nil }
                return String(decoding: bytes, as: UTF8.self)
            }
            // Clamped: a damaged count must not make a cooldown overflow.
            let failures = text(1).flatMap { Int($0) }.map { min(max(0, $0), ExportTiming.maxCountedFailures) } ?? 0
            switch String(decoding: kind, as: UTF8.self) {
            case "claimed": completion(.claimed(LeaseGrant(failures: failures)))
            case "resume":
                guard let id = text(2), let postedAt = text(3).flatMap({ Int64($0) }) else {
                    return completion(.claimed(LeaseGrant(failures: failures)))
                }
                completion(.claimed(LeaseGrant(resumeExportID: id, resumePostedAt: postedAt, failures: failures)))
            case "held": completion(.held)
            case "fresh": completion(.fresh)
            case "cooling": completion(.coolingDown)
            default:
                logger.warning("unexpected reply to the export lease script", metadata: ["reason": "\(logger.summarise(result))"])
                completion(.unavailable)
            }
        }
    }

    /// Extends the lease: true while the token holds it, false once it does not, nil when Redis
    /// could not say (the job goes on; its writes are fenced anyway).
    func renew(campaign: String, token: [UInt8], timing: ExportTiming, completion: @escaping (Bool?) -> Void) {
        redis.send([Self.eval, Self.renewScript, Self.oneKey, Array(CacheKey.exportLease(campaign: campaign).utf8), token,
                    digits(timing.leaseMilliseconds)]) { result in
            guard case .success(.integer(let held)) = result else { return completion(nil) }
            completion(held == 1)
        }
    }

    func recordExport(campaign: String, token: [UInt8], exportID: String, postedAt: Int64, timing: ExportTiming) {
        redis.send([Self.eval, Self.recordExportScript, Self.twoKeys, Array(CacheKey.exportJob(campaign: campaign).utf8),
                    Array(CacheKey.exportLease(campaign: campaign).utf8), token, Array(exportID.utf8), digits(postedAt),
                    digits(timing.jobLifetimeMilliseconds)]) { [logger] result in
            if case .success(.integer(1)) = result { return }
            logger.debug("export id not recorded", metadata: ["campaign": "\(campaign)", "reason": "\(logger.summarise(result))"])
        }
    }

    /// Stores a finished aggregate (see `saveScript`); the completion hears whether it was stored.
    func save(campaign: String, token: [UInt8], aggregate: [UInt8], generatedAt: Int64, deductionDue: Int64?, exportID: String,
              timing: ExportTiming, completion: @escaping (Result<Bool, RedisError>) -> Void) {
        redis.send([Self.eval, Self.saveScript, Self.threeKeys] + keys(campaign)
            + [token, aggregate, digits(generatedAt), deductionDue.map(digits) ?? [], digits(timing.dataLifetimeMilliseconds),
               Array(exportID.utf8)]) { [logger] result in
            guard case .success(.integer(let stored)) = result else { return completion(.failure(Self.failure(result, logger: logger))) }
            completion(.success(stored == 1))
        }
    }

    /// Records a failed attempt, when the next may start, and releases the lease (`failScript`).
    /// A campaign Voucherify does not know leaves the background refresh.
    func fail(campaign: String, token: [UInt8], now: Int64, reason: String, campaignMissing: Bool, keepExport: Bool, retryAt: Int64,
              timing: ExportTiming) {
        redis.send([Self.eval, Self.failScript, Self.twoKeys, Array(CacheKey.exportJob(campaign: campaign).utf8),
                    Array(CacheKey.exportLease(campaign: campaign).utf8), token, digits(now), Array(reason.utf8),
                    campaignMissing ? Self.oneKey : [], keepExport ? Self.oneKey : [], digits(timing.jobLifetimeMilliseconds), digits(retryAt)]) { [logger] result in
            if case .success(.integer) = result { return }
            logger.debug("export failure not recorded", metadata: ["campaign": "\(campaign)", "reason": "\(logger.summarise(result))"])
        }
        if campaignMissing {
            redis.send([Array("ZREM".utf8), Array(CacheKey.exportedCampaigns.utf8), Array(campaign.utf8)]) { _ in }
        }
    }

    /// Notes that `campaign` was asked for at `now`, so the background refresh keeps it current;
    /// past `maxRegisteredCampaigns`, the least recently asked for leave.
    func register(campaign: String, now: Int64) {
        let key = Array(CacheKey.exportedCampaigns.utf8)
        redis.send([Array("ZADD".utf8), key, digits(now), Array(campaign.utf8)]) { _ in }
        redis.send([Array("ZREMRANGEBYRANK".utf8), key, Array("0".utf8), digits(Int64(-(Self.maxRegisteredCampaigns + 1)))]) { _ in }
    }

    /// The campaigns asked for within the registry window (at most `limit`, least recently asked
    /// first), after forgetting older ones.
    func registeredCampaigns(now: Int64, limit: Int, completion: @escaping ([String]) -> Void) {
        let oldest = digits(now - Self.registryWindowMilliseconds)
        let key = Array(CacheKey.exportedCampaigns.utf8)
        redis.send([Array("ZREMRANGEBYSCORE".utf8), key, Array("-inf".utf8), Array("(".utf8) + oldest]) { _ in }
        redis.send([Array("ZRANGEBYSCORE".utf8), key, oldest, Array("+inf".utf8), Array("LIMIT".utf8), Array("0".utf8),
                    digits(Int64(limit))]) { result in
            guard case .success(.array(let items)) = result else { return completion([]) }
            completion(items.compactMap { item in
                guard case .bulk(let bytes) = item else { return nil }
                return String(decoding: bytes, as: UTF8.self)
            })
        }
    }

    private func keys(_ campaign: String) -> [[UInt8]] {
        [Array(CacheKey.exportData(campaign: campaign).utf8), Array(CacheKey.exportJob(campaign: campaign).utf8),
         Array(CacheKey.exportLease(campaign: campaign).utf8)]
    }

    private func digits(_ value: Int64) -> [UInt8] { Array(String(value).utf8) }

    private static func failure(_ result: Result<RedisReply, RedisError>, logger: Logger) -> RedisError {
        switch result {
        case .failure(let error): return error
        case .success(.error(let message)):
            _ = logger.summarise(result)
            return .server(message)
        case .success:
            _ = logger.summarise(result)
            return .server("unexpected reply")
        }
    }
}
