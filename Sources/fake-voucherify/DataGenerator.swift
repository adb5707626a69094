import ExpiryDomain
/// SplitMix64: small, fast and the same on every platform, so a seed always gives the same data.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generated campaign data: `MEMBER-000001`…, `v_fake_000001`…, unique `lopb_…` ids,
/// points 0…500 (some 0), ~15 % never-expiring buckets, expiry dates over the next 365 days (UTC),
/// buckets ascending by `expires_at` with never-expiring ones last. Besides, each member has
/// `expiredBucketsPerMember` EXPIRED buckets from the past year, which only exports show.
struct DataGenerator {
    let members: Int
    let bucketsPerMember: ClosedRange<Int>
    let expiredBucketsPerMember: ClosedRange<Int>
    let seed: UInt64
    let campaignId: String
    let campaignName: String
    /// Day number (UTC) that "today" means; dates are deterministic for a seed and a day.
    let today: Int64

    func generate() -> LoyaltyCampaign {
        var rng = SeededGenerator(seed: seed)
        var usedIds = Set<String>()
        var result: [String: LoyaltyMember] = [:]
        result.reserveCapacity(members)
        let nowSeconds = today * 86_400
        for n in stride(from: 1, through: members, by: 1) {
            let code = "MEMBER-" + zeroPadded(n, 6)
            let voucherId = "v_fake_" + zeroPadded(n, 6)
            let count = Int.random(in: bucketsPerMember, using: &rng)
            var buckets: [PointsBucket] = []
            buckets.reserveCapacity(count)
            for _ in 0..<count {
                let id = uniqueBucketId(using: &rng, usedIds: &usedIds)
                // About 5 % of buckets hold zero points; the rest 1…500.
                let points: Int64 = Int.random(in: 0..<100, using: &rng) < 5 ? 0 : Int64.random(in: 1...500, using: &rng)
                let neverExpires = Int.random(in: 0..<100, using: &rng) < 15
                let expiresAt = neverExpires ? nil : CalendarDate(daysSince1970: Int(today + Int64.random(in: 0..<365, using: &rng))).iso
                let created = nowSeconds - Int64.random(in: 3600...(365 * 86_400), using: &rng)
                // About a third were never updated (no updated_at key at all).
                let updated: String? = Int.random(in: 0..<3, using: &rng) == 0
                    ? nil
                    : Timestamp(millisecondsSince1970: (created + Int64.random(in: 0...(nowSeconds - created), using: &rng)) * 1000).rfc3339
                buckets.append(PointsBucket(id: id, points: points, expiresAt: expiresAt, status: "ACTIVE",
                                            createdAt: Timestamp(millisecondsSince1970: created * 1000).rfc3339, updatedAt: updated))
            }
            buckets.sort(by: DataGenerator.servedOrder)
            result[code] = LoyaltyMember(code: code, voucherId: voucherId, buckets: buckets)
        }
        addExpiredHistory(to: &result, usedIds: &usedIds)
        return LoyaltyCampaign(id: campaignId, name: campaignName, members: result)
    }

    /// Past buckets, drawn from a stream of their own after every ACTIVE bucket exists: the data
    /// the member endpoint serves for a seed and day is what it was before this history existed.
    private func addExpiredHistory(to members: inout [String: LoyaltyMember], usedIds: inout Set<String>) {
        var rng = SeededGenerator(seed: seed ^ 0x6578_7069_7265_6421)
        for n in stride(from: 1, through: self.members, by: 1) {
            let code = "MEMBER-" + zeroPadded(n, 6)
            let count = Int.random(in: expiredBucketsPerMember, using: &rng)
            guard count > 0 else { continue }
            var expired: [PointsBucket] = []
            expired.reserveCapacity(count)
            for _ in 0..<count {
                let id = uniqueBucketId(using: &rng, usedIds: &usedIds)
                let lastDay = today - Int64.random(in: 1...365, using: &rng)
                let created = (lastDay - Int64.random(in: 30...365, using: &rng)) * 86_400
                // Voucherify's job deducts it in the early hours after its last day.
                let deducted = (lastDay + 1) * 86_400 + Int64.random(in: 0..<21_600, using: &rng)
                expired.append(PointsBucket(id: id, points: Int64.random(in: 1...500, using: &rng),
                                            expiresAt: CalendarDate(daysSince1970: Int(lastDay)).iso,
                                            status: PointsExpiryJob.expiredStatus,
                                            createdAt: Timestamp(millisecondsSince1970: created * 1000).rfc3339,
                                            updatedAt: Timestamp(millisecondsSince1970: deducted * 1000).rfc3339))
            }
            expired.sort(by: DataGenerator.servedOrder)
            members[code]?.expiredBuckets = expired
        }
    }

    /// Ascending by `expires_at` (ISO dates sort as strings), never-expiring last, then by creation.
    static func servedOrder(_ a: PointsBucket, _ b: PointsBucket) -> Bool {
        switch (a.expiresAt, b.expiresAt) {
        case let (x?, y?) where x != y: return x < y
        case (nil, _?): return false
        case (_?, nil): return true
        default: return (a.createdAt, a.id) < (b.createdAt, b.id)
        }
    }

    private func zeroPadded(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// `lopb_` and 20 random hex digits, drawn again until no other bucket has it.
    private func uniqueBucketId(using rng: inout SeededGenerator, usedIds: inout Set<String>) -> String {
        var id: String
        repeat {
            id = "lopb_" + randomToken(length: 20, using: &rng)
        } while !usedIds.insert(id).inserted
        return id
    }

    private func randomToken(length: Int, using rng: inout SeededGenerator) -> String {
        let alphabet = Array("0123456789abcdef")
        return String((0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
    }
}
