import ExpiryDomain
import Glibc
import RPC

/// Binary answers made from cached JSON records, kept so that a gRPC or Connect-proto hit does not
/// transcode the same record again (transcoding through the generated message costs several times
/// a whole JSON hit). Each use compares the record just read from Redis with the one the binary
/// form was made from, byte for byte: a changed, refilled or invalidated record simply misses, so
/// this can never answer other data than Redis holds now. Per worker (loop-confined, no locks),
/// bounded by bytes; when full it starts over, which costs only transcodes. An answer the worker's
/// tier holds keeps its binary form in the tier record instead (counted in the tier's bound).
final class BinaryAnswers {
    private struct Key: Hashable {
        let campaign: String
        let member: String
    }

    private struct Made {
        /// The record's JSON prefix it was made from (a copy: a slice would pin the Redis reply).
        let json: [UInt8]
        let protoPrefix: [UInt8]
    }

    private var made: [Key: Made] = [:]
    private var bytes = 0
    private let maxBytes: Int
    private let tier: LocalTier?

    init(tier: LocalTier? = nil, maxBytes: Int = 4 << 20) {
        self.tier = tier
        self.maxBytes = maxBytes
    }

    /// The binary response for one request.
    func body(_ answer: CachedAnswer, campaign: String, member: String, expiringBefore: CalendarDate?) throws(RPCError) -> [UInt8] {
        if let tier, let record = tier.fallback(campaign: campaign, member: member), case .answer(let held) = record.entry,
           Self.sameStorage(held.bodyPrefix, answer.bodyPrefix) {
            if let prefix = record.protoPrefix { return answer.protoBody(prefix: prefix, expiringBefore: expiringBefore) }
            let prefix = try answer.protoPrefix()
            tier.record(record, grewBy: record.keep(protoPrefix: prefix), member: member)
            return answer.protoBody(prefix: prefix, expiringBefore: expiringBefore)
        }
        let key = Key(campaign: campaign, member: member)
        if let entry = made[key], Self.same(entry.json, answer.bodyPrefix) {
            return answer.protoBody(prefix: entry.protoPrefix, expiringBefore: expiringBefore)
        }
        let prefix = try answer.protoPrefix()
        remember(Made(json: Array(answer.bodyPrefix), protoPrefix: prefix), for: key)
        return answer.protoBody(prefix: prefix, expiringBefore: expiringBefore)
    }

    /// Entries held now (for tests).
    var count: Int { made.count }

    private func remember(_ entry: Made, for key: Key) {
        if let old = made[key] { bytes -= Self.footprint(old, key) }
        let size = Self.footprint(entry, key)
        if bytes + size > maxBytes {
            made.removeAll(keepingCapacity: true)
            bytes = 0
        }
        made[key] = entry
        bytes += size
    }

    private static func footprint(_ entry: Made, _ key: Key) -> Int {
        entry.json.count + entry.protoPrefix.count + key.campaign.utf8.count + key.member.utf8.count
    }

    /// The very bytes the tier holds (the answer came from the tier), not merely equal ones.
    private static func sameStorage(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
        a.count == b.count && a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in x.baseAddress == y.baseAddress } }
    }

    private static func same(_ kept: [UInt8], _ current: ArraySlice<UInt8>) -> Bool {
        kept.count == current.count && kept.withUnsafeBytes { a in current.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}
