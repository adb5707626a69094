import Testing
import TestSupport
@testable import ExpiryDomain

@Suite struct CampaignAggregateTests {
    /// v_1: June 1 and 3; v_2: June 3; v_3: June 5 and never; v_4: never only.
    let campaign: CampaignAggregate

    init() throws {
        campaign = try aggregate(standardHeader + """
            a,camp_1,v_1,10,ACTIVE,2026-06-01
            b,camp_1,v_1,1,ACTIVE,2026-06-03
            c,camp_1,v_2,20,ACTIVE,2026-06-03
            d,camp_1,v_2,5,ACTIVE,2026-06-03
            e,camp_1,v_3,100,ACTIVE,2026-06-05
            f,camp_1,v_3,1000,ACTIVE,
            g,camp_1,v_4,7,ACTIVE,
            h,camp_1,v_5,3,EXPIRED,2026-06-01

            """)
    }

    func days(_ isos: String...) throws -> [CampaignDay] {
        let all = [
            CampaignDay(date: try day("2026-06-01"), points: 10, buckets: 1, cards: 1),
            CampaignDay(date: try day("2026-06-03"), points: 26, buckets: 3, cards: 2),
            CampaignDay(date: try day("2026-06-05"), points: 100, buckets: 1, cards: 1),
        ]
        return all.filter { isos.contains($0.date.iso) }
    }

    @Test func figures() throws {
        #expect(campaign.campaignId == "camp_1")
        #expect(campaign.activePoints == 1143)
        #expect(campaign.cards == 4)
        #expect(campaign.days == (try days("2026-06-01", "2026-06-03", "2026-06-05")))
        #expect(campaign.lastValidDays == [try day("2026-06-01"), try day("2026-06-03"), try day("2026-06-05")])
        #expect(campaign.rows == ExportRowCounts(total: 8, counted: 7, skipped: 1, malformed: 0))
    }

    @Test func rangesIncludeBothEnds() throws {
        #expect(campaign.range(from: try day("2026-06-01"), to: try day("2026-06-03"))
            == CampaignRange(expiringPoints: 36, expiringCards: 2, days: try days("2026-06-01", "2026-06-03")))
        #expect(campaign.range(from: try day("2026-06-03"), to: try day("2026-06-03"))
            == CampaignRange(expiringPoints: 26, expiringCards: 2, days: try days("2026-06-03")))
        #expect(campaign.range(from: try day("2026-06-02"), to: try day("2026-06-05"))
            == CampaignRange(expiringPoints: 126, expiringCards: 3, days: try days("2026-06-03", "2026-06-05")))
    }

    @Test func rangesOpenOnOneSide() throws {
        // v_1 expires on two days in range but counts once.
        #expect(campaign.range(from: nil, to: try day("2026-06-03"))
            == CampaignRange(expiringPoints: 36, expiringCards: 2, days: try days("2026-06-01", "2026-06-03")))
        #expect(campaign.range(from: try day("2026-06-02"), to: nil)
            == CampaignRange(expiringPoints: 126, expiringCards: 3, days: try days("2026-06-03", "2026-06-05")))
        #expect(campaign.range(from: try day("2026-06-04"), to: nil)
            == CampaignRange(expiringPoints: 100, expiringCards: 1, days: try days("2026-06-05")))
        #expect(campaign.range(from: nil, to: nil)
            == CampaignRange(expiringPoints: 136, expiringCards: 3, days: campaign.days))
    }

    @Test func rangesWithoutDays() throws {
        let none = CampaignRange(expiringPoints: 0, expiringCards: 0, days: [])
        #expect(campaign.range(from: try day("2026-06-03"), to: try day("2026-06-01")) == none)
        #expect(campaign.range(from: try day("2026-06-02"), to: try day("2026-06-02")) == none)
        #expect(campaign.range(from: try day("2026-06-06"), to: nil) == none)
        #expect(campaign.range(from: nil, to: try day("2026-05-31")) == none)
    }

    @Test func encodingRoundTrips() throws {
        for aggregate in [campaign, try aggregate(standardHeader), try aggregate(standardHeader + "x,,v_1,abc,ACTIVE,\u{1}é\n")] {
            #expect(try CampaignAggregate(encoded: aggregate.encoded()) == aggregate)
        }
        #expect(campaign.encoded().count < 80)
    }

    @Test func decodingRefusesEveryTruncationAndTrailingBytes() throws {
        let bytes = campaign.encoded()
        for length in 0..<bytes.count {
            #expect(throws: ExportFormatError.self) { try CampaignAggregate(encoded: Array(bytes[..<length])) }
        }
        #expect(throws: ExportFormatError.invalidStoredAggregate("1 bytes follow its end")) {
            try CampaignAggregate(encoded: bytes + [0])
        }
    }

    @Test func decodingRefusesForeignOrInconsistentData() throws {
        let bytes = campaign.encoded()
        #expect(throws: ExportFormatError.invalidStoredAggregate("it does not start with the campaign aggregate magic")) {
            try CampaignAggregate(encoded: Array("{\"json\":true}".utf8))
        }
        var otherVersion = bytes
        otherVersion[4] = 2
        #expect(throws: ExportFormatError.invalidStoredAggregate("version 2 is unknown")) {
            try CampaignAggregate(encoded: otherVersion)
        }
        let header = CampaignAggregate.magic + [CampaignAggregate.formatVersion]
        // No campaign id, 0 points, 0 cards, rows 1 = 0 + 0 + 0.
        #expect(throws: ExportFormatError.invalidStoredAggregate("its row counts do not add up")) {
            try CampaignAggregate(encoded: header + [0, 0, 0, 1, 0, 0, 0, 0, 0])
        }
        // One day with points but no card.
        #expect(throws: ExportFormatError.invalidStoredAggregate("day 1970-01-01 has no cards")) {
            try CampaignAggregate(encoded: header + [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 1, 0, 0])
        }
        // Two days out of order: the second one's gap is 0.
        #expect(throws: ExportFormatError.invalidStoredAggregate("its days are not ascending")) {
            try CampaignAggregate(encoded: header + [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 5, 1, 1, 0, 0])
        }
        // A previous day after the day.
        #expect(throws: ExportFormatError.invalidStoredAggregate("day 1970-01-01 has a previous day out of order")) {
            try CampaignAggregate(encoded: header + [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 1, 0, 1, 0, 1])
        }
        // A day beyond 9999-12-31.
        #expect(throws: ExportFormatError.invalidStoredAggregate("day 2932897 is out of range")) {
            var out = header + [0, 0, 0, 0, 0, 0, 0, 0, 1]
            var zigzag = UInt64(2_932_897 * 2)
            while zigzag >= 0x80 { out.append(UInt8(truncatingIfNeeded: zigzag) | 0x80); zigzag >>= 7 }
            out.append(UInt8(zigzag))
            _ = try CampaignAggregate(encoded: out + [5, 1, 1, 0])
        }
        // A number longer than 64 bits.
        #expect(throws: ExportFormatError.self) {
            try CampaignAggregate(encoded: header + [0, 0] + [UInt8](repeating: 0xFF, count: 10) + [1])
        }
    }

    @Test func decodingRandomBytesNeverTraps() throws {
        var random = SplitMix64(seed: 11)
        let valid = campaign.encoded()
        for round in 0..<2000 {
            var bytes = valid
            // Flip a few bytes of a valid encoding, or make one up whole.
            if round % 4 == 0 {
                bytes = (0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            } else {
                for _ in 0...(random.next() % 3) {
                    bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            if let decoded = try? CampaignAggregate(encoded: bytes) {
                // Whatever decodes is consistent enough to encode and query.
                #expect(try CampaignAggregate(encoded: decoded.encoded()) == decoded)
                _ = decoded.range(from: nil, to: nil)
            }
        }
    }

    /// The campaign's figures are the sums of its members' `MemberExpiration`s, and distinct
    /// cards over any range are exact, on random data checked against a brute force.
    @Test(arguments: [1, 2, 3, 4])
    func matchesTheSumOfMembersOnRandomData(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let firstDay = try day("2026-01-01").daysSince1970
        let cardCount = 5 + Int(random.next() % 40)
        let dayCount = 1 + Int(random.next() % 30)
        var text = standardHeader
        var bucketsByCard: [String: [PointsBucket]] = [:]
        for row in 0..<Int(200 + random.next() % 400) {
            let voucherId = "v_\(random.next() % UInt64(cardCount))"
            let points = Int64(random.next() % 30) - 5
            let status = ["ACTIVE", "ACTIVE", "ACTIVE", "active", "EXPIRED"][Int(random.next() % 5)]
            let date = random.next() % 8 == 0 ? nil : CalendarDate(daysSince1970: firstDay + Int(random.next() % UInt64(dayCount)))
            text += "lopb_\(row),camp_1,\(voucherId),\(points),\(status),\(date?.iso ?? "")\n"
            bucketsByCard[voucherId, default: []].append(bucket("lopb_\(row)", points, date, status: status, voucherId: voucherId))
        }
        let campaign = try aggregate(text, chunkSize: 1 + Int(random.next() % 100))
        let members = bucketsByCard.values.map { MemberExpiration(campaign: "c", member: "m", buckets: $0, fetchedAt: Timestamp(millisecondsSince1970: 0)) }

        #expect(campaign.activePoints == members.reduce(0) { $0 + $1.activePoints })
        #expect(campaign.cards == Int64(bucketsByCard.values.filter { $0.contains { $0.isActive && $0.points > 0 } }.count))
        var expectedDays: [CalendarDate: CampaignDay] = [:]
        for expiration in members.flatMap(\.expirations) {
            var entry = expectedDays[expiration.date] ?? CampaignDay(date: expiration.date, points: 0, buckets: 0, cards: 0)
            entry.points += expiration.points
            entry.buckets += Int64(expiration.buckets)
            entry.cards += 1
            expectedDays[expiration.date] = entry
        }
        #expect(campaign.days == expectedDays.values.sorted { $0.date < $1.date })

        let bounds = [nil] + (-1...dayCount).map { Optional(CalendarDate(daysSince1970: firstDay + $0)) }
        for from in bounds {
            for to in bounds {
                let inRange = { (date: CalendarDate) in from.map { date >= $0 } ?? true && to.map { date <= $0 } ?? true }
                let expected = CampaignRange(
                    expiringPoints: members.flatMap(\.expirations).filter { inRange($0.date) }.reduce(0) { $0 + $1.points },
                    expiringCards: Int64(members.filter { $0.expirations.contains { inRange($0.date) } }.count),
                    days: campaign.days.filter { inRange($0.date) })
                #expect(campaign.range(from: from, to: to) == expected, "from \(String(describing: from)) to \(String(describing: to))")
            }
        }
        #expect(try CampaignAggregate(encoded: campaign.encoded()) == campaign)
    }
}
