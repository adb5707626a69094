import Foundation
import Testing
import TestSupport

/// GetCampaignExpiration end to end: the service, a real redis-server and the fake Voucherify's
/// export flow (create → poll → download the CSV).
@Suite(.serialized) struct CampaignExpirationTests {
    static let path = "/pointsexpiry.v1.PointsExpiryService/GetCampaignExpiration"
    static let batchPath = "/pointsexpiry.v1.PointsExpiryService/BatchGetMemberExpirations"
    /// Every date of the generated data is after this: the whole campaign is in range.
    static let wholeRange = #","from":"2000-01-01""#

    static func ask(_ baseURL: String, campaign: String = FakeVoucherify.campaignID, extra: String = "") throws -> HTTPResult {
        try CurlClient.request("POST", baseURL + path, body: Data(#"{"campaign":"\#(campaign)"\#(extra)}"#.utf8),
                               headers: ["content-type: application/json"])
    }

    /// Asks until the answer is a 200 (the first export is done), and returns it.
    static func answer(_ baseURL: String, campaign: String = FakeVoucherify.campaignID, extra: String = "") throws -> HTTPResult {
        var last: HTTPResult?
        try waitUntil("GetCampaignExpiration answers from an export (last: \(last.map { "\($0.status) \($0.text)" } ?? "none"))",
                      interval: 0.1) {
            last = try ask(baseURL, campaign: campaign, extra: extra)
            return last?.status == 200
        }
        return try #require(last)
    }

    @Test func theFirstCallIsUnavailableWithRetryAfterThenTheAnswerComes() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "20", "--export-delay-ms", "400"])
        let first = try Self.ask(service.baseURL)
        #expect(first.status == 503)
        #expect(first.code == "unavailable")
        #expect(first.text.contains("first export"))
        #expect(Int(first.headers["retry-after"] ?? "") ?? 0 >= 1)

        let answer = try Self.answer(service.baseURL)
        #expect(answer.headers["x-cache"] == "hit")
        #expect(Int(answer.headers["age"] ?? "") != nil)
        let json = answer.json
        #expect(json["campaign"] as? String == FakeVoucherify.campaignID)
        #expect(json["campaignId"] as? String == FakeVoucherify.campaignID)
        #expect((json["generatedAt"] as? String)?.hasSuffix("Z") == true)
        #expect(Int64(json["activePoints"] as? String ?? "") ?? 0 > 0)
        #expect(Int64(json["cards"] as? String ?? "") == 20)
        // One export for all those calls.
        #expect(try service.fake.exportsCreated() == 1)
    }

    /// The campaign's totals are the sum of its members' GetMemberExpiration answers for the same
    /// data: points and buckets per date, distinct cards per date and in a range.
    @Test func campaignTotalsEqualTheSumOverItsMembers() throws {
        let members = 30
        let service = try ServiceUnderTest(fakeArguments: ["--members", "\(members)", "--buckets-per-member", "1..6", "--export-delay-ms", "100"])
        let campaign = try Self.answer(service.baseURL, extra: Self.wholeRange).json

        let codes = (1...members).map { String(format: "MEMBER-%06d", $0) }
        let body = try JSONSerialization.data(withJSONObject: ["campaign": FakeVoucherify.campaignID, "members": codes])
        let batch = try CurlClient.request("POST", service.baseURL + Self.batchPath, body: body, headers: ["content-type: application/json"])
        #expect(batch.status == 200)
        let results = try #require(batch.json["results"] as? [[String: Any]])
        #expect(results.count == members)

        var activePoints: Int64 = 0
        var cards = 0
        var byDate: [String: (points: Int64, buckets: Int64, cards: Int64)] = [:]
        for result in results {
            let expiration = try #require(result["expiration"] as? [String: Any])
            let points = Int64(expiration["activePoints"] as? String ?? "") ?? 0
            activePoints += points
            let buckets = try #require(expiration["buckets"] as? [[String: Any]])
            if buckets.contains(where: { ($0["status"] as? String) == "ACTIVE" && (Int64($0["points"] as? String ?? "") ?? 0) > 0 }) {
                cards += 1
            }
            for date in expiration["expirations"] as? [[String: Any]] ?? [] {
                let key = try #require(date["date"] as? String)
                var entry = byDate[key, default: (0, 0, 0)]
                entry.points += Int64(date["points"] as? String ?? "") ?? 0
                entry.buckets += Int64(date["buckets"] as? Int ?? 0)
                entry.cards += 1
                byDate[key] = entry
            }
        }
        #expect(Int64(campaign["activePoints"] as? String ?? "") == activePoints)
        #expect(Int64(campaign["cards"] as? String ?? "") == Int64(cards))
        let expirations = try #require(campaign["expirations"] as? [[String: Any]])
        #expect(expirations.map { $0["date"] as? String ?? "" } == byDate.keys.sorted())
        for date in expirations {
            let expected = try #require(byDate[date["date"] as? String ?? ""])
            #expect(Int64(date["points"] as? String ?? "") == expected.points)
            #expect(Int64(date["buckets"] as? String ?? "") == expected.buckets)
            #expect(Int64(date["cards"] as? String ?? "") == expected.cards)
        }
        #expect(Int64(campaign["expiringPoints"] as? String ?? "") == byDate.values.reduce(0) { $0 + $1.points })

        // A bounded range: the dates inside it, and each card counted once however many dates it has there.
        let dates = byDate.keys.sorted()
        let (from, to) = (dates[dates.count / 4], dates[dates.count / 2])
        let ranged = try Self.answer(service.baseURL, extra: #","from":"\#(from)","to":"\#(to)""#).json
        let inRange = try #require(ranged["expirations"] as? [[String: Any]]).compactMap { $0["date"] as? String }
        #expect(inRange == dates.filter { $0 >= from && $0 <= to })
        let cardsInRange = results.filter { result in
            let expiration = result["expiration"] as? [String: Any] ?? [:]
            return (expiration["expirations"] as? [[String: Any]] ?? []).contains { ($0["date"] as? String).map { $0 >= from && $0 <= to } ?? false }
        }.count
        #expect(Int64(ranged["expiringCards"] as? String ?? "") == Int64(cardsInRange))
    }

    @Test func theAggregateIsRefreshedAfterExportRefreshSeconds() throws {
        let service = try ServiceUnderTest(environment: ["EXPORT_REFRESH_SECONDS": "2"],
                                           fakeArguments: ["--members", "5", "--export-delay-ms", "100"])
        let first = try Self.answer(service.baseURL, extra: Self.wholeRange).json
        let firstGenerated = try #require(first["generatedAt"] as? String)
        let firstPoints = Int64(first["activePoints"] as? String ?? "") ?? 0
        // New data in Voucherify: a new card with 1,000 points.
        try service.fake.putMember("NEW-CARD", buckets: buckets(1, points: 1000), voucherID: "v_new_card")

        // Nobody needs to ask: the sweep refreshes the campaign once it is 2 s old.
        try waitUntil("a newer export is stored", interval: 0.2) { try service.fake.exportsCreated() >= 2 }
        var refreshed: [String: Any] = [:]
        try waitUntil("the answer comes from an export that has the new card", interval: 0.1) {
            refreshed = try Self.ask(service.baseURL, extra: Self.wholeRange).json
            return Int64(refreshed["activePoints"] as? String ?? "") == firstPoints + 1000
        }
        #expect(Int64(refreshed["cards"] as? String ?? "") == 6)
        #expect((refreshed["generatedAt"] as? String).map { $0 > firstGenerated } == true)
    }

    /// An aggregate is due at the first deduction instant after its export (the midnight after
    /// its earliest date, here in UTC), however long before EXPORT_REFRESH_SECONDS ends; once that
    /// instant has passed the answer is stale and a new export runs.
    @Test func theAggregateIsDueAtItsNextDeductionInstant() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "5", "--export-delay-ms", "100"])
        let first = try Self.answer(service.baseURL, extra: Self.wholeRange)
        let earliest = try #require((first.json["expirations"] as? [[String: Any]])?.first?["date"] as? String)
        let day = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: earliest + "T00:00:00.000Z"))
        let data = "pe:export:{\(FakeVoucherify.campaignID)}:data"
        #expect(try service.redis.cli("HGET", data, "deduction_due") == "\(Int64(day.timeIntervalSince1970 + 86_400) * 1000)")

        // As if that midnight had just passed.
        _ = try service.redis.cli("HSET", data, "deduction_due", "\(Int64(Date().timeIntervalSince1970 * 1000) - 1)")
        let after = try Self.ask(service.baseURL)
        #expect(after.headers["x-cache"] == "stale")
        try waitUntil("a new export follows the deduction instant") { try service.fake.exportsCreated() == 2 }
        try waitUntil("the new aggregate is current again") { try Self.ask(service.baseURL).headers["x-cache"] == "hit" }
    }

    @Test func anExportThatEndsInErrorKeepsThePreviousAnswer() throws {
        let log = CapturedLog()
        let service = try ServiceUnderTest(environment: ["EXPORT_REFRESH_SECONDS": "3"],
                                           fakeArguments: ["--members", "5", "--export-delay-ms", "100"], log: log)
        let first = try Self.answer(service.baseURL)
        try service.fake.exportSettings(["fail_next": 1000])

        try waitUntil("a refresh ended in ERROR", interval: 0.1) {
            log.entries("campaign export failed; the previous answer stays").contains { $0["reason"]?.contains("status ERROR") == true }
        }
        // Whichever export was stored last (a good refresh may have come before the failures began).
        let stored = try service.redis.cli("HGET", "pe:export:{\(FakeVoucherify.campaignID)}:data", "generated_at")
        let storedAt = try #require(Int64(stored))
        let after = try Self.ask(service.baseURL)
        #expect(after.status == 200)
        #expect(after.json["activePoints"] as? String == first.json["activePoints"] as? String)
        let generatedAt = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: after.json["generatedAt"] as? String ?? ""))
        #expect(Int64((generatedAt.timeIntervalSince1970 * 1000).rounded()) == storedAt)
        #expect(after.headers["x-cache"] == "stale")
        #expect(Int(after.headers["age"] ?? "") ?? 0 >= 3)
        #expect(service.app.metrics.render().contains(#"points_expiry_campaign_exports_total{result="export_error"}"#))
    }

    /// A download token that has expired is renewed by asking for the export again, a bounded
    /// number of times; once tokens live long enough, the export is downloaded.
    @Test func anExpiredDownloadTokenIsRenewedByAskingForTheExportAgain() throws {
        let log = CapturedLog()
        let service = try ServiceUnderTest(environment: ["EXPORT_REFRESH_SECONDS": "2"],
                                           fakeArguments: ["--members", "3", "--export-delay-ms", "100", "--export-token-ttl-ms", "1"], log: log)
        #expect(try Self.ask(service.baseURL).status == 503)
        try waitUntil("the job gave up after renewing the token") {
            log.entries("campaign export failed; the previous answer stays").contains { $0["reason"]?.contains("fresh tokens") == true }
        }
        let stats = try service.fake.exportStats()
        // The first URL and the 3 fresh ones were all refused, each after a poll for a new URL.
        #expect(stats["rejected_downloads"] as? Int ?? 0 >= 4)
        #expect(stats["polls"] as? Int ?? 0 >= 4)
        try service.fake.exportSettings(["token_ttl_ms": 300_000])
        let answer = try Self.answer(service.baseURL)
        #expect(Int64(answer.json["cards"] as? String ?? "") == 3)
    }

    @Test func twoReplicasRunOneExport() throws {
        let fleet = try Fleet(replicas: 2, fakeArguments: ["--members", "10", "--export-delay-ms", "3000"])
        // Both replicas asked, each starting an export unless the other's runs; asked again meanwhile.
        for replica in fleet.replicas { #expect(try Self.ask(replica.baseURL).status == 503) }
        for replica in fleet.replicas { _ = try Self.ask(replica.baseURL) }
        let answers = try fleet.replicas.map { try Self.answer($0.baseURL).json["generatedAt"] as? String }
        #expect(answers[0] != nil && answers[0] == answers[1])
        #expect(try fleet.fake.exportsCreated() == 1)
    }

    /// A job that died (its replica crashed) leaves the export it asked for in Redis: the next
    /// job follows that export instead of asking Voucherify for another.
    @Test func aJobFollowsTheExportADeadJobAskedFor() throws {
        let log = CapturedLog()
        let service = try ServiceUnderTest(fakeArguments: ["--members", "4", "--export-delay-ms", "300"], log: log)
        let orphan = try service.fake.newExport()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try service.redis.cli("HSET", "pe:export:{\(FakeVoucherify.campaignID)}:job", "export_id", orphan, "posted_at", "\(now)")

        #expect(try Self.ask(service.baseURL).status == 503)
        let answer = try Self.answer(service.baseURL)
        #expect(Int64(answer.json["cards"] as? String ?? "") == 4)
        #expect(try service.fake.exportsCreated() == 1)
        #expect(log.entries("following a campaign export asked for earlier").first?["export"] == orphan)
        // Stored: nobody needs to follow it any more.
        #expect(try service.redis.cli("HEXISTS", "pe:export:{\(FakeVoucherify.campaignID)}:job", "export_id") == "0")
    }

    /// An aggregate this release cannot read (another release's format, damage) is exported
    /// again at once, not when it would have been due.
    @Test func anUnreadableAggregateIsExportedAgain() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "4", "--export-delay-ms", "100"])
        let first = try Self.answer(service.baseURL)
        let data = "pe:export:{\(FakeVoucherify.campaignID)}:data"
        let generated = try service.redis.cli("HGET", data, "generated_at")
        // A newer aggregate that no worker holds yet, and cannot decode.
        _ = try service.redis.cli("HSET", data, "agg", "garbage", "generated_at", "\((Int64(generated) ?? 0) + 1)")
        #expect(try Self.ask(service.baseURL).status == 503)
        let again = try Self.answer(service.baseURL)
        #expect(again.json["cards"] as? String == first.json["cards"] as? String)
        #expect(try service.fake.exportsCreated() == 2)
    }

    /// More campaigns than a worker runs jobs at once are all refreshed in the background.
    @Test func theSweepRefreshesManyCampaigns() throws {
        let service = try ServiceUnderTest(environment: ["EXPORT_REFRESH_SECONDS": "2", "WORKERS": "1"],
                                           fakeArguments: ["--members", "1", "--export-delay-ms", "100"])
        let campaigns = (1...20).map { "camp_sweep_\($0)" }
        for campaign in campaigns {
            try service.fake.control("PUT", "members", ["campaign": campaign, "member": "M-\(campaign)", "voucher_id": "v_\(campaign)",
                                                        "buckets": buckets(1)])
        }
        func generatedAt(_ campaign: String) throws -> Int64? {
            Int64(try service.redis.cli("HGET", "pe:export:{\(campaign)}:data", "generated_at"))
        }
        // Asked once each (a worker starts at most 16 jobs at once; the rest start when asked again).
        var first: [String: Int64] = [:]
        try waitUntil("all 20 campaigns have a first export", timeout: 120, interval: 0.2) {
            for campaign in campaigns where first[campaign] == nil {
                if let generated = try generatedAt(campaign) { first[campaign] = generated } else { _ = try Self.ask(service.baseURL, campaign: campaign) }
            }
            return first.count == campaigns.count
        }
        // Without asking again: every campaign gets a newer export.
        try waitUntil("the sweep refreshed all 20 campaigns", timeout: 120, interval: 0.5) {
            try campaigns.allSatisfy { campaign in try generatedAt(campaign).map { $0 > first[campaign] ?? .max } ?? false }
        }
    }

    @Test func exportsSpendTheRateBudgetAtWarmingPriority() throws {
        // The whole budget is reserved for interactive reads: warming, hence exports, gets none.
        let service = try ServiceUnderTest(environment: ["VOUCHERIFY_RATE_LIMIT": "100/min", "VOUCHERIFY_INTERACTIVE_RESERVE": "1"],
                                           fakeArguments: ["--members", "3", "--export-delay-ms", "100"])
        #expect(try Self.ask(service.baseURL).status == 503)
        try waitUntil("the budget refused the export's call") {
            service.app.metrics.render().contains(#"points_expiry_rate_budget_refusals_total{class="warming"} 1"#)
        }
        #expect(try service.fake.exportsCreated() == 0)
        // Interactive reads still pass.
        #expect(try service.get(member: "MEMBER-000001").status == 200)
    }

    @Test func anUnknownCampaignIsNotFoundOnceVoucherifySaysSo() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "3"])
        #expect(try Self.ask(service.baseURL, campaign: "camp_nope").status == 503)
        var last: HTTPResult?
        try waitUntil("not_found") {
            last = try Self.ask(service.baseURL, campaign: "camp_nope")
            return last?.status == 404
        }
        #expect(last?.code == "not_found")
        #expect(last?.text.contains("camp_nope") == true)
    }

    @Test func connectGetAndGRPCServeTheSameAnswer() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "4", "--export-delay-ms", "100"])
        let post = try Self.answer(service.baseURL)
        let message = #"{"campaign":"\#(FakeVoucherify.campaignID)"}"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let get = try CurlClient.request("GET", service.baseURL + Self.path + "?encoding=json&message=" + message)
        #expect(get.status == 200)
        #expect(get.json["activePoints"] as? String == post.json["activePoints"] as? String)
        #expect(get.json["generatedAt"] as? String == post.json["generatedAt"] as? String)
        // gRPC + JSON codec.
        let request = Array(#"{"campaign":"\#(FakeVoucherify.campaignID)"}"#.utf8)
        let frame = Data([0, 0, 0, 0, UInt8(request.count)] + request)
        let grpc = try CurlClient.request("POST", service.baseURL + Self.path, body: frame,
                                          headers: ["content-type: application/grpc+json", "te: trailers"])
        #expect(grpc.headers["grpc-status"] == "0")
        let reply = try JSONSerialization.jsonObject(with: grpc.body.dropFirst(5)) as? [String: Any]
        #expect(reply?["activePoints"] as? String == post.json["activePoints"] as? String)
    }

    @Test(arguments: [
        (#"{}"#, "campaign is required"),
        (#"{"campaign":"c","from":"2026-13-01"}"#, "from must be a real date"),
        (#"{"campaign":"c","from":"2026-12-02","to":"2026-12-01"}"#, "is before from"),
    ])
    func badRequestsAreInvalidArgument(_ body: String, _ message: String) throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "1"])
        let result = try CurlClient.request("POST", service.baseURL + Self.path, body: Data(body.utf8), headers: ["content-type: application/json"])
        #expect(result.status == 400)
        #expect(result.code == "invalid_argument")
        #expect(result.text.contains(message))
    }
}

extension FakeVoucherify {
    /// Exports asked of the fake so far (every campaign).
    func exportsCreated() throws -> Int {
        guard let created = try exportStats()["created"] as? Int else { throw TestFailure("fake export stats without created") }
        return created
    }
}

extension ISO8601DateFormatter {
    /// RFC 3339 with milliseconds, as the contract's timestamps are written.
    static var withFractionalSeconds: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
