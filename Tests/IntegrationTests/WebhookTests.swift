import Foundation
import Testing
import Voucherify

/// `POST /webhooks/voucherify` and `InvalidateMember` against redis-server, the fake and curl.
@Suite(.serialized) struct WebhookTests {
    /// Caches `member` under the campaign id and under its name; returns after both are hits.
    func cacheUnderBothSpellings(_ service: ServiceUnderTest, member: String) throws {
        for campaign in [FakeVoucherify.campaignID, FakeVoucherify.campaignName] {
            #expect(try service.get(member: member, campaign: campaign).headers["x-cache"] == "miss")
            try service.waitUntilCached(member: member, campaign: campaign)
            #expect(try service.get(member: member, campaign: campaign).headers["x-cache"] == "hit")
        }
    }

    func cacheStatus(_ service: ServiceUnderTest, _ member: String, _ campaign: String) throws -> String? {
        try service.get(member: member, campaign: campaign).headers["x-cache"]
    }

    @Test func prettyEnvelopeSignedCompactDropsTheMemberUnderIdAndName() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-W1", buckets: buckets(2))
        try service.fake.putMember("CARD-OTHER", buckets: buckets(2))
        try cacheUnderBothSpellings(service, member: "CARD-W1")
        #expect(try cacheStatus(service, "CARD-OTHER", FakeVoucherify.campaignID) == "miss")

        let answer = try service.deliver(pointsExpiredEnvelope(member: "CARD-W1"))
        #expect(answer.status == 200)
        #expect(answer.text == #"{"status":"invalidated"}"#)
        #expect(answer.httpVersion == "2")

        #expect(try cacheStatus(service, "CARD-W1", FakeVoucherify.campaignID) == "miss")
        #expect(try cacheStatus(service, "CARD-W1", FakeVoucherify.campaignName) == "miss")
        #expect(try cacheStatus(service, "CARD-OTHER", FakeVoucherify.campaignID) == "hit")
    }

    @Test func bareDataObjectSignedOverTheRawBodyInvalidates() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-W2", buckets: buckets(1))
        try cacheUnderBothSpellings(service, member: "CARD-W2")
        let data = #"{"voucher":{"code":"CARD-W2","campaign":"\#(FakeVoucherify.campaignName)","campaign_id":"\#(FakeVoucherify.campaignID)"},"points":10,"buckets":[],"transaction":{"id":"vtx_bare_1","type":"POINTS_EXPIRATION"}}"#
        // Compact already, so the raw-body and compact signatures coincide; a pretty body signed raw is below.
        #expect(try service.deliver(data).status == 200)
        #expect(try cacheStatus(service, "CARD-W2", FakeVoucherify.campaignID) == "miss")
        #expect(try cacheStatus(service, "CARD-W2", FakeVoucherify.campaignName) == "miss")

        let pretty = "{\n  \"voucher\": {\"code\": \"CARD-W2\", \"campaign_id\": \"\(FakeVoucherify.campaignID)\"},\n  \"buckets\": []\n}"
        let rawSignature = WebhookSigner(secret: ServiceUnderTest.webhookSecret).signature(of: Array(pretty.utf8))
        try service.waitUntilCached(member: "CARD-W2")
        #expect(try cacheStatus(service, "CARD-W2", FakeVoucherify.campaignID) == "hit")
        #expect(try service.deliver(pretty, signature: rawSignature).status == 200)
        #expect(try cacheStatus(service, "CARD-W2", FakeVoucherify.campaignID) == "miss")
    }

    @Test func unicodeCampaignNamesAndCodesSurviveSigningAndKeys() throws {
        let service = try ServiceUnderTest.withWebhook()
        let name = "Zürich Treue ✨"
        try service.fake.control("PUT", "members", ["campaign": "camp_unicode", "campaign_name": name, "member": "KARTE-ÄÖÜ",
                                                    "voucher_id": "v_u", "buckets": buckets(1)])
        #expect(try service.get(member: "KARTE-ÄÖÜ", campaign: name).headers["x-cache"] == "miss")
        try service.waitUntilCached(member: "KARTE-ÄÖÜ", campaign: name)
        #expect(try service.get(member: "KARTE-ÄÖÜ", campaign: name).headers["x-cache"] == "hit")
        let answer = try service.deliver(pointsExpiredEnvelope(member: "KARTE-ÄÖÜ", campaignID: "camp_unicode", campaignName: name))
        #expect(answer.status == 200)
        #expect(try service.get(member: "KARTE-ÄÖÜ", campaign: name).headers["x-cache"] == "miss")
    }

    @Test func missingOrWrongSignaturesAreRefusedAndTouchNothing() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-W3", buckets: buckets(1))
        try cacheUnderBothSpellings(service, member: "CARD-W3")
        let body = pointsExpiredEnvelope(member: "CARD-W3")

        let unsigned = try service.deliver(body, signature: "")
        #expect(unsigned.status == 401)
        #expect(unsigned.code == "unauthenticated")
        let wrongSecret = WebhookSigner(secret: "not-the-secret").signature(of: Array(body.utf8))
        #expect(try service.deliver(body, signature: wrongSecret).status == 401)
        #expect(try service.deliver(body, signature: "zz").status == 401)
        // Signed for another body.
        let other = WebhookSigner(secret: ServiceUnderTest.webhookSecret).signature(of: Array("{}".utf8))
        #expect(try service.deliver(body, signature: other).status == 401)

        #expect(try cacheStatus(service, "CARD-W3", FakeVoucherify.campaignID) == "hit")
        #expect(try cacheStatus(service, "CARD-W3", FakeVoucherify.campaignName) == "hit")
    }

    @Test func withoutASecretTheEndpointSaysItIsNotConfigured() throws {
        let service = try ServiceUnderTest()
        let answer = try service.deliver(pointsExpiredEnvelope(member: "CARD-X"))
        #expect(answer.status == 503)
        #expect((answer.json["message"] as? String)?.contains("WEBHOOK_SECRET") == true)
    }

    @Test func redeliveredEventIsRecognisedAndDoesNoWork() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-W4", buckets: buckets(1))
        try cacheUnderBothSpellings(service, member: "CARD-W4")
        let body = pointsExpiredEnvelope(member: "CARD-W4", eventID: "evt_dup_1")

        #expect(try service.deliver(body).text == #"{"status":"invalidated"}"#)
        // Refill after the first delivery: this fresh entry must survive the redelivery.
        try cacheUnderBothSpellings(service, member: "CARD-W4")
        let again = try service.deliver(body)
        #expect(again.status == 200)
        #expect(again.json["duplicate"] as? Bool == true)
        #expect(try cacheStatus(service, "CARD-W4", FakeVoucherify.campaignID) == "hit")
        #expect(try cacheStatus(service, "CARD-W4", FakeVoucherify.campaignName) == "hit")

        // A new event for the same member is new work.
        #expect(try service.deliver(pointsExpiredEnvelope(member: "CARD-W4", eventID: "evt_dup_2")).json["duplicate"] == nil)
        #expect(try cacheStatus(service, "CARD-W4", FakeVoucherify.campaignID) == "miss")
        let metrics = try CurlClient.request("GET", service.baseURL + "/metrics").text
        #expect(metrics.contains(#"points_expiry_webhook_events_total{result="duplicate"} 1"#))
        #expect(metrics.contains(#"points_expiry_webhook_events_total{result="invalidated"} 2"#))
    }

    @Test func otherEventsMalformedBodiesAndOversizedBodies() throws {
        let service = try ServiceUnderTest.withWebhook()
        let other = try service.deliver(#"{"id":"whs_1","type":"voucher.published","data":{"voucher":{"code":"X"}},"event":{"id":"evt_o"}}"#)
        #expect(other.status == 200)
        #expect(other.text == #"{"status":"ignored"}"#)

        let broken = #"{"type": "voucher.loyalty_card.points_expired", "data": "#
        let brokenSignature = WebhookSigner(secret: ServiceUnderTest.webhookSecret).signature(of: Array(broken.utf8))
        let malformed = try service.deliver(broken, signature: brokenSignature)
        #expect(malformed.status == 400)
        #expect(malformed.code == "invalid_argument")

        let noCode = try service.deliver(#"{"type":"voucher.loyalty_card.points_expired","data":{"voucher":{"campaign_id":"c"}}}"#)
        #expect(noCode.status == 400)
        #expect((noCode.json["message"] as? String)?.contains("data.voucher.code") == true)

        let big = #"{"pad":""# + String(repeating: "a", count: 1024 * 1024) + #""}"#
        let tooLarge = try service.deliver(big, signature: "00")
        #expect(tooLarge.status == 413)
        #expect(tooLarge.code == "resource_exhausted")

        let gzipped = try service.deliver(#"{"type":"x"}"#, headers: ["content-encoding: gzip"])
        #expect(gzipped.status == 415)

        let get = try CurlClient.request("GET", service.baseURL + ServiceUnderTest.webhookPath)
        #expect(get.status == 405)
        #expect(get.headers["allow"] == "POST")
    }

    /// Point 4 of the issue: a refill in flight when the webhook is acknowledged cannot store.
    /// One worker (see `fencedService`), so "the next read is a miss" shows the store was refused.
    @Test func slowRefillInFlightCannotWriteBackAfterTheWebhook() throws {
        let service = try fencedService()
        try service.fake.putMember("CARD-RACE", buckets: buckets(2, points: 50))
        try service.fake.resetStats()
        try service.fake.fail(["mode": "slow", "latency_ms": slowUpstreamMilliseconds, "count": 1])

        // The read starts, misses, reads the fence and waits on the slow upstream.
        let slowRead = inBackground { try service.get(member: "CARD-RACE") }
        try waitForUpstreamCall(service)

        // Voucherify expires the points, then tells us; we acknowledge while the read is in flight.
        try service.fake.putMember("CARD-RACE", buckets: buckets(1, points: 50))
        let acknowledged = try service.deliver(pointsExpiredEnvelope(member: "CARD-RACE"))
        #expect(acknowledged.status == 200)
        #expect(!slowRead.isFinished, "the read should still be waiting on Voucherify")

        let stale = try slowRead()
        #expect(stale.json["activePoints"] as? String == "100")

        let next = try service.get(member: "CARD-RACE")
        #expect(next.headers["x-cache"] == "miss")
        #expect(next.json["activePoints"] as? String == "50")
        #expect(try service.fake.totalCalls() == 2)
        #expect(try service.get(member: "CARD-RACE").headers["x-cache"] == "hit")
    }

    @Test func redisRefusingIsA503ThatTouchesNothingAndTheRetrySucceeds() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-W5", buckets: buckets(1))
        try cacheUnderBothSpellings(service, member: "CARD-W5")
        let body = pointsExpiredEnvelope(member: "CARD-W5")

        // Redis stays up with its data but refuses the service (its reconnects carry no password).
        try service.redis.cli("CONFIG", "SET", "requirepass", "locked-out")
        try service.redis.cli("-a", "locked-out", "--no-auth-warning", "CLIENT", "KILL", "TYPE", "normal")
        let refused = try service.deliver(body)
        #expect(refused.status == 503)
        #expect(refused.code == "unavailable")
        try service.redis.cli("-a", "locked-out", "--no-auth-warning", "CONFIG", "SET", "requirepass", "")
        #expect(try service.redis.cli("HLEN", "pe:{CARD-W5}:answers") == "2")

        try service.waitUntilReady()
        let retried = try service.deliver(body)
        #expect(retried.status == 200)
        #expect(retried.text == #"{"status":"invalidated"}"#)
        #expect(try cacheStatus(service, "CARD-W5", FakeVoucherify.campaignID) == "miss")
        #expect(try cacheStatus(service, "CARD-W5", FakeVoucherify.campaignName) == "miss")
    }

    @Test func redisDownIsA503AndTheRetrySucceeds() throws {
        let service = try ServiceUnderTest.withWebhook()
        let body = pointsExpiredEnvelope(member: "CARD-W7")
        service.redis.stop()
        #expect(try service.deliver(body).status == 503)
        try service.redis.start()
        try service.waitUntilReady()
        #expect(try service.deliver(body).text == #"{"status":"invalidated"}"#)
    }

    /// Redis stalls: the invalidation waits only as long as the Redis client's command timeout
    /// (500 ms; then the connection is dropped) and the relay is told 503 "retry later". Nothing
    /// was invalidated, and once Redis is back the retry succeeds.
    @Test func pausedRedisIsA503RetryLaterThatTouchesNothingAndTheRetrySucceeds() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-W6", buckets: buckets(1))
        try cacheUnderBothSpellings(service, member: "CARD-W6")
        let body = pointsExpiredEnvelope(member: "CARD-W6")

        // CLIENT PAUSE rather than SIGSTOP: a paused Redis drops the commands of clients that
        // disconnect meanwhile, where a resumed process would still run them. The pause cannot be
        // ended early (CLIENT UNPAUSE is paused too), so it is as long as this test may wait; the
        // delivery reaches Redis well within it (were it later, it would succeed and fail the test).
        try service.redis.cli("CLIENT", "PAUSE", "5000", "ALL")
        let stalled = try service.deliver(body)
        #expect(stalled.status == 503)
        #expect(stalled.code == "unavailable")
        let message = stalled.json["message"] as? String ?? ""
        #expect(message.contains("retry later"))
        #expect(message.contains("did not answer within 500 ms"))

        // Ready again only once Redis answers, i.e. after the pause.
        try service.waitUntilReady()
        #expect(try service.redis.cli("HLEN", answersKey("CARD-W6")) == "2")
        let retried = try service.deliver(body)
        #expect(retried.status == 200)
        // Not a duplicate: the stalled attempt left no handled-event mark either.
        #expect(retried.text == #"{"status":"invalidated"}"#)
        #expect(try cacheStatus(service, "CARD-W6", FakeVoucherify.campaignID) == "miss")
        #expect(try cacheStatus(service, "CARD-W6", FakeVoucherify.campaignName) == "miss")
    }

    /// The fence does not depend on knowing a campaign's other spelling: a read by name that is in
    /// flight is fenced by an invalidation by id.
    @Test func invalidateMemberByIdFencesARefillByName() throws {
        let service = try fencedService()
        try service.fake.putMember("CARD-RACE2", buckets: buckets(2, points: 50))
        try service.fake.resetStats()
        try service.fake.fail(["mode": "slow", "latency_ms": slowUpstreamMilliseconds, "count": 1])
        let slowRead = inBackground { try service.get(member: "CARD-RACE2", campaign: FakeVoucherify.campaignName) }
        try waitForUpstreamCall(service)

        try service.fake.putMember("CARD-RACE2", buckets: buckets(1, points: 50))
        #expect(try service.invalidate(member: "CARD-RACE2", campaign: FakeVoucherify.campaignID).text == #"{"invalidated":false}"#)
        #expect(!slowRead.isFinished, "the read should still be waiting on Voucherify")
        #expect(try slowRead().json["activePoints"] as? String == "100")

        let next = try service.get(member: "CARD-RACE2", campaign: FakeVoucherify.campaignName)
        #expect(next.headers["x-cache"] == "miss")
        #expect(next.json["activePoints"] as? String == "50")
    }

    /// A generation token that vanished mid-refill (eviction, failover, expiry) fences it too.
    @Test func refillWhoseTokenVanishedDoesNotStore() throws {
        let service = try fencedService()
        try service.fake.putMember("CARD-EVICT", buckets: buckets(1))
        try service.fake.resetStats()
        try service.fake.fail(["mode": "slow", "latency_ms": slowUpstreamMilliseconds, "count": 1])
        let slowRead = inBackground { try service.get(member: "CARD-EVICT") }
        try waitForUpstreamCall(service)
        #expect(try service.redis.cli("DEL", "pe:{CARD-EVICT}:gen") == "1")
        #expect(!slowRead.isFinished, "the read should still be waiting on Voucherify")
        let refill = try slowRead()
        #expect(refill.status == 200)
        #expect(refill.headers["x-cache"] == "miss")

        // /readyz PINGs over the same (only) connection, after the store attempt: once it is
        // answered, Redis has run that attempt.
        #expect(try CurlClient.request("GET", service.baseURL + "/readyz").status == 200)
        #expect(try service.redis.cli("HLEN", answersKey("CARD-EVICT")) == "0")
        let next = try service.get(member: "CARD-EVICT")
        #expect(next.headers["x-cache"] == "miss")
        #expect(try service.fake.totalCalls() == 2)
    }

    @Test func invalidateMemberByIdReachesTheEntryCachedByName() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-R1", buckets: buckets(1))
        try cacheUnderBothSpellings(service, member: "CARD-R1")

        let first = try service.invalidate(member: "CARD-R1", campaign: FakeVoucherify.campaignID)
        #expect(first.status == 200)
        #expect(first.text == #"{"invalidated":true}"#)
        #expect(try cacheStatus(service, "CARD-R1", FakeVoucherify.campaignName) == "miss")
        #expect(try cacheStatus(service, "CARD-R1", FakeVoucherify.campaignID) == "miss")

        // Both are cached again; by name reaches the id's entry too.
        try service.waitUntilCached(member: "CARD-R1", campaign: FakeVoucherify.campaignName)
        try service.waitUntilCached(member: "CARD-R1", campaign: FakeVoucherify.campaignID)
        #expect(try service.invalidate(member: "CARD-R1", campaign: FakeVoucherify.campaignName).text == #"{"invalidated":true}"#)
        #expect(try cacheStatus(service, "CARD-R1", FakeVoucherify.campaignID) == "miss")
        #expect(try service.invalidate(member: "NOT-CACHED", campaign: FakeVoucherify.campaignID).text == #"{"invalidated":false}"#)

        let invalid = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember",
                                             body: Data(#"{"campaign":"c"}"#.utf8), headers: ["content-type: application/json"])
        #expect(invalid.code == "invalid_argument")
        #expect(try CurlClient.request("GET", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember").status == 405)
    }
}

extension WebhookTests {
    /// How long the fake holds the upstream answer in the fence tests: the test acts on the
    /// refill in flight as soon as the fake has the call, which takes milliseconds; this much
    /// slack keeps "the refill is still in flight" true on a very slow machine (each test checks it).
    var slowUpstreamMilliseconds: Int { 3000 }

    /// A service with one worker, for the fence tests: all of its Redis commands go over one
    /// connection, answered in order, and a refill queues its fenced store before it answers. So
    /// any request made after that answer reaches Redis after the store attempt, and "the next
    /// read is a miss" really shows the store was refused (with two workers the next read could
    /// overtake a store that is about to land).
    func fencedService() throws -> ServiceUnderTest {
        try ServiceUnderTest.withWebhook(["WORKERS": "1"])
    }

    func waitForUpstreamCall(_ service: ServiceUnderTest) throws {
        try waitUntil("the refill's call reached the fake Voucherify") { try service.fake.totalCalls() == 1 }
    }
}

/// Work running on its own thread (not the test's concurrency pool, which blocking calls could
/// starve); calling it waits for its result.
final class BackgroundWork<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: Result<T, Error>?

    init(_ work: @escaping () throws -> T) {
        nonisolated(unsafe) let work = work
        Thread.detachNewThread { [self] in
            let outcome = Result { try work() }
            lock.withLock { result = outcome }
            done.signal()
        }
    }

    var isFinished: Bool { lock.withLock { result != nil } }

    func callAsFunction() throws -> T {
        done.wait()
        done.signal()
        return try lock.withLock { result! }.get()
    }
}

func inBackground<T>(_ work: @escaping () throws -> T) -> BackgroundWork<T> { BackgroundWork(work) }

/// The whole loop a person can watch locally: the fake runs Voucherify's nightly job for one
/// member and delivers the signed webhook to the service over HTTP/2.
@Suite(.serialized) struct FakeVoucherifyWebhookTests {
    @Test func fakeExpiresDuePointsAndTheServiceDropsTheMember() throws {
        let service = try ServiceUnderTest.withWebhook()
        try service.fake.putMember("CARD-E2E", buckets: buckets(2, points: 10, firstDay: 5))
        #expect(try service.get(member: "CARD-E2E").headers["x-cache"] == "miss")
        let cached = try service.get(member: "CARD-E2E", campaign: FakeVoucherify.campaignName)
        #expect(cached.json["activePoints"] as? String == "20")
        try service.waitUntilCached(member: "CARD-E2E", campaign: FakeVoucherify.campaignName)
        #expect(try service.get(member: "CARD-E2E", campaign: FakeVoucherify.campaignName).headers["x-cache"] == "hit")

        // The nightly job of the day after the first bucket's last day.
        let asOf = String(ISO8601DateFormatter().string(from: Date().addingTimeInterval(6 * 86_400)).prefix(10))
        let expiry = try service.fake.expire(["campaign": FakeVoucherify.campaignID, "member": "CARD-E2E", "as_of": asOf,
                                              "webhook_url": service.baseURL + ServiceUnderTest.webhookPath,
                                              "secret": ServiceUnderTest.webhookSecret])
        #expect(expiry["expired_buckets"] as? Int == 1)
        let delivery = expiry["webhook"] as? [String: Any]
        #expect(delivery?["status"] as? Int == 200)
        #expect(delivery?["body"] as? String == #"{"status":"invalidated"}"#)

        for campaign in [FakeVoucherify.campaignID, FakeVoucherify.campaignName] {
            let fresh = try service.get(member: "CARD-E2E", campaign: campaign)
            #expect(fresh.headers["x-cache"] == "miss")
            #expect(fresh.json["activePoints"] as? String == "10")
            try service.waitUntilCached(member: "CARD-E2E", campaign: campaign)
        }

        // Voucherify's retry of the same delivery is recognised.
        let payload = try #require(expiry["payload"] as? String)
        let redelivery = try service.deliver(payload, signature: expiry["signature"] as? String)
        #expect(redelivery.json["duplicate"] as? Bool == true)
        #expect(try service.get(member: "CARD-E2E").headers["x-cache"] == "hit")
    }
}
