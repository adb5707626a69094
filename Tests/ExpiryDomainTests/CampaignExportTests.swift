import Testing
import TestSupport
@testable import ExpiryDomain

/// Aggregates `bytes` fed in chunks of `chunkSize` (nil: all at once).
func aggregate(_ bytes: [UInt8], chunkSize: Int? = nil, limits: CampaignAggregator.Limits = .init()) throws -> CampaignAggregate {
    var aggregator = CampaignAggregator(limits: limits)
    let size = max(1, chunkSize ?? bytes.count)
    for start in stride(from: 0, to: bytes.count, by: size) {
        try Array(bytes[start..<min(start + size, bytes.count)]).withUnsafeBytes { try aggregator.feed($0) }
    }
    return try aggregator.finish()
}

func aggregate(_ text: String, chunkSize: Int? = nil, limits: CampaignAggregator.Limits = .init()) throws -> CampaignAggregate {
    try aggregate(Array(text.utf8), chunkSize: chunkSize, limits: limits)
}

/// The error aggregating `text` fails with, or nil when it succeeds.
func exportError(_ text: String, limits: CampaignAggregator.Limits = .init()) -> ExportFormatError? {
    do {
        _ = try aggregate(text, limits: limits)
        return nil
    } catch let error as ExportFormatError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

let standardHeader = "id,campaign_id,voucher_id,points,status,expires_at\n"

@Suite struct CampaignExportHeaderTests {
    @Test(arguments: [
        ("Voucher ID", ExportColumn.voucherId), ("voucher_id", .voucherId), ("VoucherId", .voucherId),
        ("VOUCHER-ID", .voucherId), ("voucher.id", .voucherId), ("Id", .id), ("Campaign ID", .campaignId),
        ("Points", .points), ("Total Points", .points), ("bucket.total_points", .points), ("Bucket Total Points", .points),
        ("STATUS", .status), ("Expires At", .expiresAt), ("expires_at", .expiresAt), ("expiresAt", .expiresAt),
    ])
    func labelsMapToColumns(_ label: String, _ column: ExportColumn) {
        #expect(ExportColumn(label: label) == column)
    }

    @Test(arguments: ["Expiration Date", "expires", "voucher", "code", "created_at", "", "points expiring", "Voucher IDs"])
    func ambiguousOrUnknownLabelsDoNotMap(_ label: String) {
        #expect(ExportColumn(label: label) == nil)
    }

    @Test func columnsAreFoundByNameInAnyOrder() throws {
        let header = try ExportHeader(labels: ["Expires At", "Note", "Status", "Points", "Voucher ID"])
        #expect(header.fieldCount == 5)
        #expect([header.voucherId, header.points, header.status, header.expiresAt] == [4, 3, 2, 0])
        #expect(header.campaignId == nil)
    }

    @Test func aHeaderWithoutARequiredColumnIsFatalAndSaysWhatItFound() {
        #expect(exportError("Id,Voucher,Points,Status\nx,v_1,1,ACTIVE\n")
            == .missingColumns(missing: [.voucherId, .expiresAt], found: ["Id", "Voucher", "Points", "Status"]))
        let long = String(repeating: "x", count: 50)
        guard case .missingColumns(_, let found) = exportError("\(long),voucher_id\n") else {
            Issue.record("expected missing columns")
            return
        }
        #expect(found == [String(repeating: "x", count: 40) + "…", "voucher_id"])
        #expect(ExportFormatError.missingColumns(missing: [.points, .status], found: ["a", "b"]).description
            == #"the export's header has no points, status column; found "a", "b""#)
    }

    @Test func aColumnNamedTwiceIsFatal() {
        #expect(exportError("Voucher ID,points,status,expires_at,voucher_id\n")
            == .duplicateColumn(.voucherId, labels: ["Voucher ID", "voucher_id"]))
    }

    @Test func anEmptyExportIsAnErrorAndAHeaderAloneAnEmptyCampaign() throws {
        #expect(exportError("") == .empty)
        #expect(exportError("\u{FEFF}\r\n\r\n") == .empty)
        let campaign = try aggregate(standardHeader)
        #expect(campaign.activePoints == 0)
        #expect(campaign.cards == 0)
        #expect(campaign.days.isEmpty)
        #expect(campaign.rows == ExportRowCounts())
        #expect(campaign.range(from: nil, to: nil) == CampaignRange(expiringPoints: 0, expiringCards: 0, days: []))
    }

    @Test func aMalformedHeaderRowIsFatal() {
        #expect(exportError("voucher_id,po\"ints,status,expires_at\n")
            == .malformedHeader(reason: "line 1: a quote inside an unquoted field"))
    }
}

@Suite struct CampaignExportRowTests {
    @Test func onlyActiveRowsCountWhateverTheirCase() throws {
        let campaign = try aggregate(standardHeader + """
            a,camp_1,v_1,10,ACTIVE,2026-06-01
            b,camp_1,v_1,20,active,2026-06-01
            c,camp_1,v_2,400,EXPIRED,2026-04-01
            d,camp_1,v_3,800,INACTIVE,
            e,camp_1,v_3,1600,,
            f,camp_1,v_3,3200,ACTIVE ,

            """)
        #expect(campaign.activePoints == 30)
        #expect(campaign.cards == 1)
        #expect(campaign.days == [CampaignDay(date: try day("2026-06-01"), points: 30, buckets: 2, cards: 1)])
        #expect(campaign.rows == ExportRowCounts(total: 6, counted: 2, skipped: 4, malformed: 0))
    }

    @Test func neverExpiringBucketsCountInPointsAndCardsButOnNoDay() throws {
        let campaign = try aggregate(standardHeader + """
            a,camp_1,v_1,40,ACTIVE,
            b,camp_1,v_2,2,ACTIVE,
            c,camp_1,v_2,5,ACTIVE,2026-06-01

            """)
        #expect(campaign.activePoints == 47)
        #expect(campaign.cards == 2)
        #expect(campaign.days == [CampaignDay(date: try day("2026-06-01"), points: 5, buckets: 1, cards: 1)])
    }

    @Test func zeroPointBucketsNeitherCountNorCreateDaysOrCards() throws {
        let campaign = try aggregate(standardHeader + """
            a,camp_1,v_1,0,ACTIVE,2026-05-01
            b,camp_1,v_2,0,ACTIVE,2026-06-01
            c,camp_1,v_3,10,ACTIVE,2026-06-01
            d,camp_1,v_4,0,ACTIVE,

            """)
        #expect(campaign.days == [CampaignDay(date: try day("2026-06-01"), points: 10, buckets: 1, cards: 1)])
        #expect(campaign.cards == 1)
        #expect(campaign.activePoints == 10)
        #expect(campaign.rows.counted == 4)
    }

    @Test func aCardsDayCountsOnlyWhenItsPointsThatDaySumAboveZero() throws {
        // As in MemberExpiration: v_1's day nets to 0, v_2's to 5 with one bucket with points.
        let campaign = try aggregate(standardHeader + """
            a,camp_1,v_1,10,ACTIVE,2026-06-01
            b,camp_1,v_1,-10,ACTIVE,2026-06-01
            c,camp_1,v_2,-5,ACTIVE,2026-06-01
            d,camp_1,v_2,10,ACTIVE,2026-06-01

            """)
        #expect(campaign.days == [CampaignDay(date: try day("2026-06-01"), points: 5, buckets: 1, cards: 1)])
        #expect(campaign.activePoints == 5)
        #expect(campaign.cards == 2)
        #expect(campaign.range(from: nil, to: nil).expiringCards == 1)
    }

    @Test func datesMayBeRFC3339TimestampsAndPointsMayHaveSpaces() throws {
        let campaign = try aggregate(standardHeader + """
            a,camp_1,v_1, 7 ,ACTIVE,2026-06-01T23:59:59.999+02:00
            b,camp_1,v_2,-3,ACTIVE,2026-06-01T00:00:00Z
            c,camp_1,v_2,4,ACTIVE,2026-06-01

            """)
        #expect(campaign.days == [CampaignDay(date: try day("2026-06-01"), points: 8, buckets: 2, cards: 2)])
    }

    @Test func malformedRowsAreCountedAndSampledAndChangeNothing() throws {
        let good = """
            a,camp_1,v_1,10,ACTIVE,2026-06-01
            b,camp_1,v_2,20,ACTIVE,2026-07-01
            c,camp_1,v_3,5,ACTIVE,

            """
        let bad = """
            x,camp_1,v_9,abc,ACTIVE,2026-06-01
            x,camp_1,v_9,1.5,ACTIVE,2026-06-01
            x,camp_1,v_9,99999999999999999999,ACTIVE,2026-06-01
            x,camp_1,v_9,+3,ACTIVE,2026-06-01
            x,camp_1,v_9,,ACTIVE,2026-06-01
            x,camp_1,v_9,3,ACTIVE,2026-13-01
            x,camp_1,v_9,3,ACTIVE,2026-06-01T25:00:00Z
            x,camp_1,v_9,3,ACTIVE,2026-06-01garbage
            x,camp_1,v_9,3,ACTIVE, 2026-06-01
            x,camp_1,,3,ACTIVE,2026-06-01
            x,camp_1,\(String(repeating: "v", count: 513)),3,ACTIVE,2026-06-01
            x,camp_1,v_9,3,ACTIVE
            x,camp_1,v_9,3,ACTIVE,2026-06-01,extra
            x,camp_1,v_9,3,ACT"IVE,2026-06-01
            x,camp_1,v_9,"\(String(repeating: "9", count: 60))",ACTIVE,2026-06-01

            """
        let clean = try aggregate(standardHeader + good)
        let mixed = try aggregate(standardHeader + bad + good)
        #expect(mixed.rows == ExportRowCounts(total: 18, counted: 3, skipped: 0, malformed: 15, samples: [
            #"line 2: points "abc" is not an integer"#,
            #"line 3: points "1.5" is not an integer"#,
            #"line 4: points "99999999999999999999" is not an integer"#,
            #"line 5: points "+3" is not an integer"#,
            #"line 6: points "" is not an integer"#,
        ]))
        #expect(mixed.activePoints == clean.activePoints)
        #expect(mixed.cards == clean.cards)
        #expect(mixed.days == clean.days)
        #expect(mixed.range(from: nil, to: nil) == clean.range(from: nil, to: nil))

        // Each kind of problem, as its sample says it.
        let reasons = try bad.split(separator: "\n").map { line in
            try #require(try aggregate(standardHeader + line + "\n").rows.samples.first)
        }
        #expect(Array(reasons[5...]) == [
            #"line 2: expires_at "2026-13-01" is not a date"#,
            #"line 2: expires_at "2026-06-01T25:00:00Z" is not a date"#,
            #"line 2: expires_at "2026-06-01garbage" is not a date"#,
            #"line 2: expires_at " 2026-06-01" is not a date"#,
            "line 2: voucher_id is empty",
            "line 2: voucher_id is longer than 512 bytes",
            "line 2: 5 fields where the header has 6",
            "line 2: 7 fields where the header has 6",
            "line 2: a quote inside an unquoted field",
            "line 2: points \"\(String(repeating: "9", count: 40))…\" is not an integer",
        ])
    }

    @Test func skippedRowsAreNotJudged() throws {
        let campaign = try aggregate(standardHeader + "a,camp_1,,junk,EXPIRED,not a date\n")
        #expect(campaign.rows == ExportRowCounts(total: 1, counted: 0, skipped: 1, malformed: 0))
    }

    @Test func sumsSaturateOnAbsurdPoints() throws {
        let campaign = try aggregate(standardHeader + """
            a,camp_1,v_1,9223372036854775807,ACTIVE,2026-06-01
            b,camp_1,v_1,9223372036854775807,ACTIVE,2026-06-01
            c,camp_1,v_2,9223372036854775807,ACTIVE,2026-06-01
            d,camp_1,v_3,9223372036854775807,ACTIVE,

            """)
        #expect(campaign.activePoints == .max)
        #expect(campaign.days == [CampaignDay(date: try day("2026-06-01"), points: .max, buckets: 3, cards: 2)])
        #expect(campaign.range(from: nil, to: nil).expiringPoints == .max)
        let debts = try aggregate(standardHeader + """
            a,camp_1,v_1,-9223372036854775808,ACTIVE,2026-06-01
            b,camp_1,v_2,-9223372036854775808,ACTIVE,

            """)
        #expect(debts.activePoints == .min)
        #expect(debts.days.isEmpty)
    }

    @Test func campaignIdIsTheFirstNonEmptyOne() throws {
        #expect(try aggregate(standardHeader + "a,,v_1,1,ACTIVE,\nb,camp_2,v_1,1,EXPIRED,\nc,camp_3,v_1,1,ACTIVE,\n").campaignId == "camp_2")
        #expect(try aggregate("voucher_id,points,status,expires_at\nv_1,1,ACTIVE,\n").campaignId == "")
    }

    @Test func headersInAnySpellingAndOrderGiveTheSameAggregate() throws {
        let rows = [
            (id: "lopb_1", voucher: "v_1", points: "10", status: "ACTIVE", expires: "2026-06-01"),
            (id: "lopb_2", voucher: "v_2", points: "20", status: "EXPIRED", expires: "2026-05-01"),
            (id: "lopb_3", voucher: "v_2", points: "30", status: "ACTIVE", expires: ""),
            (id: "lopb_4", voucher: "v_3", points: "7", status: "ACTIVE", expires: "2026-07-01"),
        ]
        let fieldNames = standardHeader + rows.map { "\($0.id),camp_1,\($0.voucher),\($0.points),\($0.status),\($0.expires)\n" }.joined()
        let humanReadable = "\u{FEFF}\"Expires At\",\"Status\",\"Voucher ID\",\"Campaign ID\",\"Total Points\",\"Id\"\r\n"
            + rows.map { "\"\($0.expires)\",\"\($0.status)\",\"\($0.voucher)\",camp_1,\($0.points),\($0.id)\r\n" }.joined()
        let withUnknownColumns = "Note,VoucherId,CAMPAIGN-ID,Created At,Status,Bucket Total Points,expiresAt\n"
            + rows.map { "\"x, y\",\($0.voucher),camp_1,2025-01-01,\($0.status),\($0.points),\($0.expires)\n" }.joined()
        let expected = try aggregate(fieldNames)
        #expect(expected.activePoints == 47)
        #expect(expected.rows == ExportRowCounts(total: 4, counted: 3, skipped: 1, malformed: 0))
        #expect(try aggregate(humanReadable) == expected)
        #expect(try aggregate(withUnknownColumns) == expected)
    }

    @Test func chunkingDoesNotChangeTheAggregate() throws {
        var text = "\u{FEFF}Id,Campaign ID,Voucher ID,Points,Status,Expires At\r\n"
        var random = SplitMix64(seed: 7)
        for row in 0..<300 {
            let day = 1 + Int(random.next() % 28)
            let status = random.next() % 5 == 0 ? "\"EXPIRED\"" : "ACTIVE"
            let expires = random.next() % 7 == 0 ? "" : "2026-03-\(day < 10 ? "0" : "")\(day)"
            text += "lopb_\(row),\"camp_1\",\"v_\(random.next() % 40)\",\(Int(random.next() % 50) - 5),\(status),\(expires)\r\n"
        }
        text += "broken,row\r\nlast,camp_1,v_1,3,ACTIVE,2026-03-05"
        let whole = try aggregate(text)
        #expect(whole.rows.total == 302)
        #expect(whole.rows.malformed == 1)
        #expect(whole.days.count > 20)
        #expect(try aggregate(text, chunkSize: 1) == whole)
        #expect(try aggregate(text, chunkSize: 7) == whole)
        #expect(try aggregate(text, chunkSize: 4096) == whole)
    }

    @Test func limitsAreFatalAndTheFailureSticks() throws {
        let rows = "a,camp_1,v_1,1,ACTIVE,\nb,camp_1,v_2,1,ACTIVE,\nc,camp_1,v_3,1,ACTIVE,\n"
        #expect(try aggregate(standardHeader + rows, limits: .init(maxRows: 3)).rows.total == 3)
        #expect(exportError(standardHeader + rows + rows, limits: .init(maxRows: 3)) == .tooLarge("it has more than 3 rows"))
        #expect(try aggregate(standardHeader + rows + rows, limits: .init(maxVoucherIdBytes: 9)).cards == 3)
        #expect(exportError(standardHeader + rows + "d,camp_1,v_4,1,ACTIVE,\n", limits: .init(maxVoucherIdBytes: 9))
            == .tooLarge("its distinct voucher ids take more than 9 bytes"))

        var aggregator = CampaignAggregator(limits: .init(maxRows: 1))
        let feed = { (aggregator: inout CampaignAggregator, text: String) throws(ExportFormatError) in
            try withBytes(Array(text.utf8)) { bytes throws(ExportFormatError) in try aggregator.feed(bytes) }
        }
        #expect(throws: ExportFormatError.tooLarge("it has more than 1 rows")) { try feed(&aggregator, standardHeader + rows) }
        #expect(throws: ExportFormatError.tooLarge("it has more than 1 rows")) { try feed(&aggregator, "") }
        #expect(throws: ExportFormatError.tooLarge("it has more than 1 rows")) { try aggregator.finish() }
        // finish starts over.
        try feed(&aggregator, standardHeader)
        #expect(try aggregator.finish().rows.total == 0)
    }
}

/// `Array.withUnsafeBytes` with the body's typed error.
func withBytes<E: Error>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
    try bytes.withUnsafeBufferPointer { buffer throws(E) in try body(UnsafeRawBufferPointer(buffer)) }
}
