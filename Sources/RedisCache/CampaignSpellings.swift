import ExpiryCore
import Logging

/// Which campaign ids and names are the same campaign, as learned from Voucherify's answers (a
/// bucket names its `campaign_id`) and from webhooks (which carry both). Callers may cache a
/// member under either spelling, so an invalidation by one must reach the other.
///
/// One Redis set per spelling holds the other spellings. Campaigns are few, so the sets stay small
/// and need no expiry; each worker remembers what it already recorded to avoid repeating writes.
public final class CampaignSpellings {
    private let redis: RedisConnection
    private let logger: Logger
    private var recorded: Set<Pair> = []
    /// Bounds the memo; past it the memo starts over (recording again is harmless).
    private static let memoLimit = 1024
    private static let sadd = Array("SADD".utf8)
    private static let smembers = Array("SMEMBERS".utf8)

    private struct Pair: Hashable {
        let id: String
        let name: String
    }

    public init(redis: RedisConnection, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    /// Records that `id` and each of `names` spell one campaign (best effort, no answer awaited).
    public func record(id: String, names: [String]) {
        for name in names where name != id && !id.isEmpty && !name.isEmpty {
            let pair = Pair(id: id, name: name)
            guard !recorded.contains(pair) else { continue }
            if recorded.count >= Self.memoLimit { recorded.removeAll(keepingCapacity: true) }
            for (key, member) in [(id, name), (name, id)] {
                redis.send([Self.sadd, Array(CacheKey.campaignSpellings(key).utf8), Array(member.utf8)]) { [self] result in
                    switch result {
                    case .success(.integer): recorded.insert(pair)
                    case .success(let other): logger.warning("recording a campaign spelling failed", metadata: ["reply": "\(other)"])
                    case .failure(let error): logger.debug("recording a campaign spelling failed", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    /// The other known spellings of `campaign` (empty when none were learned).
    public func others(of campaign: String, completion: @escaping (Result<[String], RedisError>) -> Void) {
        redis.send([Self.smembers, Array(CacheKey.campaignSpellings(campaign).utf8)]) { result in
            switch result {
            case .success(.array(let members)):
                completion(.success(members.compactMap { member in
                    if case .bulk(let bytes) = member { return String(decoding: bytes, as: UTF8.self) }
                    return nil
                }))
            case .success(.error(let message)): completion(.failure(.server(message)))
            case .success(let other): completion(.failure(.server("unexpected reply to SMEMBERS: \(other)")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }
}
