import Foundation
import Testing

/// The whole request path against real parts: redis-server, the fake Voucherify, HTTP/2 curl.
@Suite(.serialized) struct GetMemberExpirationTests {
    @Test func missThenHitCallsVoucherifyOncePerPage() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("CARD-1", buckets: buckets(3, points: 100, neverExpiring: 1))
        try service.fake.resetStats()

        let first = try service.get(member: "CARD-1")
        #expect(first.status == 200)
        #expect(first.httpVersion == "2")
        #expect(first.headers["content-type"] == "application/json")
        #expect(first.headers["x-cache"] == "miss")
        #expect(first.headers["age"] == "0")
        #expect(first.json["activePoints"] as? String == "400")
        #expect(first.json["expiringPoints"] as? String == "300")
        #expect(first.json["nonExpiringPoints"] as? String == "100")
        #expect((first.json["expirations"] as? [Any])?.count == 3)
        #expect((first.json["buckets"] as? [Any])?.count == 4)
        #expect(first.json["voucherId"] as? String == "v_test_1")
        #expect(first.json["pointsExpiringBefore"] as? String == "0")

        try service.waitUntilCached(member: "CARD-1")
        let second = try service.get(member: "CARD-1")
        #expect(second.status == 200)
        #expect(second.headers["x-cache"] == "hit")
        #expect(second.json["activePoints"] as? String == "400")
        #expect(try service.fake.pageCalls() == ["\(FakeVoucherify.campaignID)|CARD-1|1": 1])
    }

    @Test func pagesThroughMultiPageMembersConcurrentlyAndOnlyOnce() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("BIG", buckets: buckets(250, points: 2))
        try service.fake.resetStats()

        let first = try service.get(member: "BIG")
        #expect(first.status == 200)
        #expect(first.json["activePoints"] as? String == "500")
        #expect((first.json["buckets"] as? [[String: Any]])?.count == 250)
        #expect((first.json["buckets"] as? [[String: Any]])?.last?["id"] as? String == "lopb_249")
        let calls = try service.fake.pageCalls()
        #expect(calls == [1, 2, 3].reduce(into: [:]) { $0["\(FakeVoucherify.campaignID)|BIG|\($1)"] = 1 })

        try service.waitUntilCached(member: "BIG")
        #expect(try service.get(member: "BIG").headers["x-cache"] == "hit")
        #expect(try service.fake.totalCalls() == 3)
    }

    @Test func campaignNameAndExpiringBeforeAreServedFromTheSameEntryShape() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("CARD-2", buckets: buckets(3, points: 5, firstDay: 1))
        let tomorrowPlus2 = Calendar(identifier: .gregorian).date(byAdding: .day, value: 3, to: Date())!
        let cutoff = String(ISO8601DateFormatter().string(from: tomorrowPlus2).prefix(10))
        for expected in ["miss", "hit"] {
            let result = try service.get(member: "CARD-2", campaign: FakeVoucherify.campaignName, extra: #","expiringBefore":"\#(cutoff)""#)
            #expect(result.status == 200)
            #expect(result.headers["x-cache"] == expected)
            #expect(result.json["campaign"] as? String == FakeVoucherify.campaignName)
            #expect(result.json["campaignId"] as? String == FakeVoucherify.campaignID)
            // Buckets expire in 1, 2 and 3 days; strictly before day 3 leaves two of them.
            #expect(result.json["pointsExpiringBefore"] as? String == "10")
            try service.waitUntilCached(member: "CARD-2", campaign: FakeVoucherify.campaignName)
        }
    }

    @Test func unknownCardAndCampaignAreNotFound() throws {
        let service = try ServiceUnderTest()
        let card = try service.get(member: "NO-SUCH-CARD")
        #expect(card.status == 404)
        #expect(card.code == "not_found")
        #expect((card.json["message"] as? String)?.contains("NO-SUCH-CARD") == true)

        let campaign = try service.get(member: "CARD-1", campaign: "camp_missing")
        #expect(campaign.status == 404)
        #expect((campaign.json["message"] as? String)?.contains("camp_missing") == true)
    }

    @Test func upstreamFailuresWithNothingCachedMapToConnectCodes() throws {
        let service = try ServiceUnderTest()
        // One member per failure: a failed read leaves a short fleet-wide back-off on its member.
        for member in ["CARD-3", "CARD-3M", "CARD-3R"] { try service.fake.putMember(member, buckets: buckets(1)) }

        // Three: a 5xx is retried twice within the read's deadline.
        try service.fake.fail(["mode": "status", "status": 500, "count": 3])
        let broken = try service.get(member: "CARD-3")
        #expect(broken.status == 503)
        #expect(broken.code == "unavailable")

        try service.fake.fail(["mode": "malformed", "count": 1])
        #expect(try service.get(member: "CARD-3M").code == "unavailable")

        // Retry-After far longer than the six calls below can take, however slow the machine.
        try service.fake.fail(["mode": "rate_limit", "retry_after": 120, "count": 1])
        let limited = try service.get(member: "CARD-3R")
        #expect(limited.status == 429)
        #expect(limited.code == "resource_exhausted")
        #expect(limited.headers["retry-after"] == "120")
        // Voucherify said "stop for 120 s": no worker calls it again before then (each curl call
        // is a new connection, so these land on either worker).
        let callsAfter429 = try service.fake.totalCalls()
        try service.fake.putMember("CARD-3X", buckets: buckets(1))
        for member in ["CARD-3R", "CARD-3X", "CARD-3R", "CARD-3X", "CARD-3R", "CARD-3X"] {
            let refused = try service.get(member: member)
            #expect(refused.code == "resource_exhausted")
            #expect(Int(refused.headers["retry-after"] ?? "") ?? 0 > 100)
        }
        #expect(try service.fake.totalCalls() == callsAfter429)
    }

    @Test func wrongCredentialsAreAnInternalErrorThatNamesTheSettingNotTheSecret() throws {
        let service = try ServiceUnderTest(environment: ["VOUCHERIFY_APP_TOKEN": "wrong-secret-token"])
        let result = try service.get(member: "MEMBER-000001")
        #expect(result.status == 500)
        #expect(result.code == "internal")
        #expect(result.text.contains("VOUCHERIFY_APP_TOKEN"))
        #expect(!result.text.contains("wrong-secret-token"))
    }

    @Test func answersFromVoucherifyWhileRedisIsDownAndRecovers() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("CARD-4", buckets: buckets(2))
        service.redis.stop()

        let during = try service.get(member: "CARD-4")
        #expect(during.status == 200)
        #expect(during.headers["x-cache"] == "miss")
        #expect(try CurlClient.request("GET", service.baseURL + "/readyz").status == 503)

        try service.redis.start()
        try service.waitUntilReady()
        #expect(try service.get(member: "CARD-4").headers["x-cache"] == "miss")
        try service.waitUntilCached(member: "CARD-4")
        #expect(try service.get(member: "CARD-4").headers["x-cache"] == "hit")
    }

    @Test func stalledRedisTimesOutAndTheAnswerComesFromVoucherify() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("CARD-S", buckets: buckets(1))
        // Redis takes the command and says nothing until resumed: only our own command timeout
        // (500 ms) can end the wait. No clock bound needed: Redis stays stalled until we resume it.
        service.redis.suspend()
        let during = try service.get(member: "CARD-S")
        let metrics = try CurlClient.request("GET", service.baseURL + "/metrics").text
        service.redis.resume()
        #expect(during.status == 200)
        #expect(during.headers["x-cache"] == "miss")
        // The lookup failed (it did not find the member absent): the answer came from Voucherify
        // while Redis was stalled.
        #expect(metrics.contains("points_expiry_cache_unavailable_total 1"))
        #expect(metrics.contains(#"points_expiry_cache_results_total{result="miss"} 1"#))
        #expect(try service.fake.totalCalls() == 1)

        // The worker that timed out dropped its connection; it is ready again once Redis answers.
        try service.waitUntilReady()
        #expect(try service.get(member: "CARD-S").headers["x-cache"] == "miss")
        try service.waitUntilCached(member: "CARD-S")
        #expect(try service.get(member: "CARD-S").headers["x-cache"] == "hit")
    }

    @Test func authenticatesToAPasswordProtectedRedis() throws {
        let service = try ServiceUnderTest(redisPassword: "s3cret-redis")
        try service.fake.putMember("CARD-A", buckets: buckets(1))
        #expect(try service.get(member: "CARD-A").headers["x-cache"] == "miss")
        try service.waitUntilCached(member: "CARD-A")
        #expect(try service.get(member: "CARD-A").headers["x-cache"] == "hit")
        #expect(try service.redis.cli("HLEN", "pe:{CARD-A}:answers") == "1")
    }

    @Test func cacheEntryNeverOutlivesTheNextDeduction() throws {
        let service = try ServiceUnderTest(environment: ["VOUCHERIFY_PROJECT_TIMEZONE": "Pacific/Kiritimati"])
        // Last valid day = today in the project's zone (UTC+14): points go at its next midnight.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Pacific/Kiritimati")!
        let parts = calendar.dateComponents([.year, .month, .day], from: Date())
        let today = String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
        try service.fake.putMember("CARD-5", buckets: [["id": "lopb_today", "points": 7, "status": "ACTIVE", "expires_at": today]])
        #expect(try service.get(member: "CARD-5").status == 200)
        try service.waitUntilCached(member: "CARD-5")

        let midnight = calendar.startOfDay(for: calendar.date(byAdding: .day, value: 1, to: Date())!)
        let secondsLeft = midnight.timeIntervalSinceNow
        let ttl = Double(try service.redis.cli("PTTL", "pe:{CARD-5}:answers")) ?? -1
        #expect(ttl > 0)
        // Kept through the stale windows (60 s, 3600 s), but never past the deduction.
        #expect(ttl / 1000 <= min(secondsLeft, 300 + 3600) + 1)
    }
}
