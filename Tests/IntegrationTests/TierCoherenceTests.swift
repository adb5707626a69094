import ExpiryDomain
import Foundation
import Testing
@testable import PointsExpiryServer
import TestSupport

/// The in-process tier against real Redis and real processes: it answers hits without Redis,
/// drops what is invalidated here, elsewhere in the fleet, or by Redis itself (FLUSHALL, expiry),
/// stops answering while it cannot hear invalidations, stays within its bytes, and keeps serving
/// inside the windows while Redis is down or hung.
@Suite(.serialized) struct TierCoherenceTests {
    static let campaign = FakeVoucherify.campaignID

    func metrics(_ baseURL: String) throws -> String { try CurlClient.request("GET", baseURL + "/metrics").text }

    /// Waits until every worker hears Redis' invalidations (their tiers answer).
    func waitUntilTracking(_ baseURL: String, workers: Int = 2) throws {
        try waitUntil("every worker of \(baseURL) tracks Redis invalidations") {
            let text = try metrics(baseURL)
            return (0..<workers).allSatisfy { metricValue(text, #"points_expiry_local_cache_tracking{worker="\#($0)"}"#) == 1 }
        }
    }

    func tierHits(_ baseURL: String) throws -> Int { metricValue(try metrics(baseURL), "points_expiry_local_cache_hits_total") }

    /// Reads `member` until the tier has answered it `hits` times (both workers' tiers hold it by
    /// then, in all likelihood; every check below holds whichever worker answers).
    func warm(_ baseURL: String, member: String, get: () throws -> HTTPResult, hits: Int = 6) throws {
        let before = try tierHits(baseURL)
        try waitUntil("the tier of \(baseURL) answers \(member)", timeout: 30) {
            #expect(try get().status == 200)
            return try tierHits(baseURL) - before >= hits
        }
    }

    /// A service (WORKERS as `environment` says, default 2) whose tiers hold `member` (read once
    /// from the fake with `points` active points, stored in Redis, then answered `hits` times by
    /// a tier).
    func serviceHolding(_ member: String, points: Int = 10, environment: [String: String] = [:], hits: Int = 6,
                        log: CapturedLog? = nil) throws -> ServiceUnderTest {
        let service = try ServiceUnderTest(environment: environment, log: log)
        try waitUntilTracking(service.baseURL, workers: Int(environment["WORKERS"] ?? "2") ?? 2)
        try service.fake.putMember(member, buckets: buckets(1, points: points))
        #expect(try service.get(member: member).headers["x-cache"] == "miss")
        try service.waitUntilCached(member: member)
        try warm(service.baseURL, member: member, get: { try service.get(member: member) }, hits: hits)
        return service
    }

    func activePoints(_ result: HTTPResult) -> String? { result.json["activePoints"] as? String }

    /// Redis commands of one kind served so far (INFO commandstats).
    func commandCalls(_ redis: RedisServer, _ command: String) throws -> Int {
        let stats = try redis.cli("INFO", "commandstats")
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):calls=") }) else { return 0 }
        return Int(line.dropFirst("cmdstat_\(command):calls=".count).prefix { $0.isNumber }) ?? 0
    }

    @Test func hitsAreAnsweredWithoutAskingRedis() throws {
        let service = try serviceHolding("TIER-1", environment: ["WORKERS": "1"])
        let lookups = try commandCalls(service.redis, "hget")
        for _ in 0..<20 {
            let answer = try service.get(member: "TIER-1")
            #expect(answer.status == 200 && answer.headers["x-cache"] == "hit")
        }
        // The worker holds it: no lookup at all.
        #expect(try commandCalls(service.redis, "hget") == lookups)
        // gRPC (binary) hits come from the tier too, with the same data.
        let grpc = try CurlClient.request("POST", service.baseURL + ServiceUnderTest.rpc,
                                          body: grpcGetMemberExpirationFrame(campaign: Self.campaign, member: "TIER-1"),
                                          headers: ["content-type: application/grpc", "te: trailers"])
        #expect(grpc.headers["grpc-status"] == "0" && grpc.headers["x-cache"] == "hit")
    }

    @Test func anInvalidationHereDropsTheMemberFromEveryWorkerBeforeItsAnswer() throws {
        let service = try serviceHolding("TIER-2", hits: 10)
        try service.fake.putMember("TIER-2", buckets: buckets(1, points: 70))
        #expect(try service.invalidate(member: "TIER-2", campaign: Self.campaign).json["invalidated"] as? Bool == true)
        // Whichever worker answers next, right after the 200, has dropped it: the new data.
        for _ in 0..<10 { #expect(activePoints(try service.get(member: "TIER-2")) == "70") }
    }

    @Test func anotherReplicasWebhookIsHeardWithinATenthOfASecond() throws {
        let fleet = try Fleet(environment: ["WEBHOOK_SECRET": ServiceUnderTest.webhookSecret])
        let (here, there) = (fleet.replicas[0], fleet.replicas[1])
        try waitUntilTracking(here.baseURL)
        try fleet.fake.putMember("TIER-3", buckets: buckets(1, points: 10))
        _ = try here.get(member: "TIER-3")
        try waitUntil("Redis holds TIER-3") { try fleet.redis.cli("HEXISTS", answersKey("TIER-3"), Self.campaign) == "1" }
        try warm(here.baseURL, member: "TIER-3", get: { try here.get(member: "TIER-3") }, hits: 10)
        try fleet.fake.putMember("TIER-3", buckets: buckets(1, points: 70))
        let client = try H2Client()
        let body = pointsExpiredEnvelope(member: "TIER-3")
        let delivered = try CurlClient.request("POST", there.baseURL + ServiceUnderTest.webhookPath, body: Data(body.utf8),
                                               headers: ["content-type: application/json",
                                                         "x-voucherify-signature: \(ServiceUnderTest.webhookSignature(body))"])
        #expect(delivered.status == 200)
        // Asked over one kept-open HTTP/2 connection, so each ask costs a millisecond, not a process.
        let acknowledged = Date()
        var seenAfter: TimeInterval?
        for _ in 0..<2000 where seenAfter == nil && Date().timeIntervalSince(acknowledged) < 5 {
            let answer = try client.send("POST", here.baseURL + ServiceUnderTest.rpc, json: #"{"campaign":"\#(Self.campaign)","member":"TIER-3"}"#)
            let json = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
            if json?["activePoints"] as? String == "70" { seenAfter = Date().timeIntervalSince(acknowledged) }
        }
        let elapsed = try #require(seenAfter, "the other replica never showed the new data")
        print("tier: another replica's webhook visible here after \(String(format: "%.1f", elapsed * 1000)) ms")
        #expect(elapsed < 0.1)
        for _ in 0..<5 { #expect(activePoints(try here.get(member: "TIER-3")) == "70") }
    }

    @Test func flushallInRedisFlushesTheTiers() throws {
        let service = try serviceHolding("TIER-4")
        let flushes = metricValue(try metrics(service.baseURL), #"points_expiry_local_cache_invalidations_total{kind="flush"}"#)
        _ = try service.redis.cli("FLUSHALL")
        try waitUntil("both workers flushed their tiers") {
            metricValue(try metrics(service.baseURL), #"points_expiry_local_cache_invalidations_total{kind="flush"}"#) >= flushes + 2
        }
        try service.fake.resetStats()
        #expect(try service.get(member: "TIER-4").headers["x-cache"] == "miss")
        #expect(try service.fake.totalCalls() >= 1)
    }

    @Test func aKeyThatExpiresInRedisLeavesTheTiers() throws {
        let service = try serviceHolding("TIER-5")
        let dropped = metricValue(try metrics(service.baseURL), #"points_expiry_local_cache_invalidations_total{kind="member"}"#)
        _ = try service.redis.cli("PEXPIRE", answersKey("TIER-5"), "1")
        try waitUntil("both workers dropped the expired member") {
            // Redis expires a key lazily or in its cycle; asking for it makes the expiry happen now.
            _ = try service.redis.cli("EXISTS", answersKey("TIER-5"))
            return metricValue(try metrics(service.baseURL), #"points_expiry_local_cache_invalidations_total{kind="member"}"#) >= dropped + 2
        }
        #expect(try service.get(member: "TIER-5").headers["x-cache"] == "miss")
    }

    @Test func losingTheSubscriptionFlushesAndAnswersFromRedisUntilTrackingIsBack() throws {
        let log = CapturedLog()
        let service = try serviceHolding("TIER-6", log: log)
        let resumed = log.entries(TierCoherenceTests.trackingOnMessage).count
        // The invalidation connections go, and a change made in the same breath (one redis-cli, one
        // connection; the listener waits 100 ms before reconnecting) is never heard by this service.
        _ = try runWithInput("/usr/bin/redis-cli", ["-p", String(service.redis.port)],
                             Data("CLIENT KILL TYPE pubsub\nDEL \(answersKey("TIER-6"))\n".utf8))
        try waitUntil("both workers track again") { log.entries(TierCoherenceTests.trackingOnMessage).count >= resumed + 2 }
        #expect(log.entries(TierCoherenceTests.trackingOffMessage).count >= 2)
        try service.fake.resetStats()
        #expect(try service.get(member: "TIER-6").headers["x-cache"] == "miss", "the tiers were flushed: Redis has nothing")
        #expect(try service.fake.totalCalls() == 1)
    }

    static let trackingOnMessage = "local tier on: Redis invalidations are heard"
    static let trackingOffMessage = "local tier off until Redis invalidations are heard again; answering from Redis"

    @Test func withRedisDownTheTierServesInsideItsWindowsAndMissesStillShareOneRead() throws {
        let service = try serviceHolding("TIER-7", hits: 10)
        service.redis.stop()
        try service.fake.resetStats()
        var cached = 0
        for _ in 0..<20 {
            let answer = try service.get(member: "TIER-7")
            #expect(answer.status == 200)
            if answer.headers["x-cache"] == "hit" { cached += 1 }
        }
        // Both workers held it (warmed with 10 tier hits); a worker that did not reads once.
        #expect(cached >= 18)
        #expect(try service.fake.totalCalls() <= 2)
        // A member nobody holds: concurrent callers share one read per worker.
        try service.fake.putMember("TIER-7B", buckets: buckets(1))
        try service.fake.hold(member: "TIER-7B", holdMilliseconds: 500)
        let burst = try CurlClient.burst(service.baseURL + ServiceUnderTest.rpc + "?encoding=json&message="
                                         + (#"{"campaign":"\#(Self.campaign)","member":"TIER-7B"}"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""),
                                         count: 20)
        #expect(burst.allSatisfy { $0.status == 200 })
        #expect((try service.fake.stats().byMember["\(Self.campaign)|TIER-7B"] ?? 0) <= 2)
    }

    @Test func aHungRedisCostsTierHitsNothingAndIsNotAskedPerRequest() throws {
        let service = try serviceHolding("TIER-8", environment: ["WORKERS": "1"], hits: 10)
        service.redis.suspend()
        defer { service.redis.resume() }
        // Once the hang is noticed the tier no longer vouches for its records; every request now
        // tries Redis and falls back to what the tier holds.
        try waitUntil("the worker noticed the hang") {
            metricValue(try metrics(service.baseURL), #"points_expiry_local_cache_tracking{worker="0"}"#) == 0
        }
        let started = Date()
        var answers: [HTTPResult] = []
        for _ in 0..<30 { answers.append(try service.get(member: "TIER-8")) }
        let elapsed = Date().timeIntervalSince(started)
        #expect(answers.allSatisfy { $0.status == 200 && $0.headers["x-cache"] == "hit" && activePoints($0) != nil })
        // Were each request to wait for Redis' 500 ms command timeout, thirty would take 15 s; the
        // hang is noticed once and then costs nothing (a tenfold margin for a slow machine).
        #expect(elapsed < 7.5, "30 tier hits took \(elapsed) s with Redis hung")
    }

    @Test func aTierRecordIsNeverServedAtItsDeductionInstant() throws {
        let service = try ServiceUnderTest()
        try waitUntilTracking(service.baseURL)
        try service.fake.putMember("TIER-10", buckets: buckets(1))
        // A record fresh for five minutes whose deduction instant comes in eight seconds, as Redis
        // would hold it on the eve of a midnight.
        let now = Timestamp(millisecondsSince1970: Int64(Date().timeIntervalSince1970 * 1000))
        let deduction = now.adding(milliseconds: 8000)
        let record = CachedAnswer(MemberExpiration(campaign: Self.campaign, member: "TIER-10", buckets: [], fetchedAt: now),
                                  freshUntil: now.adding(milliseconds: 300_000), notAfter: deduction)
        _ = try runWithInput("/usr/bin/redis-cli", ["-p", String(service.redis.port), "-x", "HSET", answersKey("TIER-10"), Self.campaign],
                             Data(record.serialized()))
        try warm(service.baseURL, member: "TIER-10", get: { try service.get(member: "TIER-10") })
        #expect(try service.get(member: "TIER-10").headers["x-cache"] == "hit")
        try waitUntilPast(Date(timeIntervalSince1970: Double(deduction.millisecondsSince1970) / 1000 + 0.05))
        try service.fake.resetStats()
        #expect(try service.get(member: "TIER-10").headers["x-cache"] == "miss")
        #expect(try service.fake.totalCalls() == 1)
    }

    @Test func aTierRecordIsAHitOnlyInsideItsFreshWindow() throws {
        let service = try ServiceUnderTest(environment: ["CACHE_TTL_SECONDS": "1", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "60"])
        try waitUntilTracking(service.baseURL)
        try service.fake.putMember("TIER-11", buckets: buckets(1))
        _ = try service.get(member: "TIER-11")
        try service.waitUntilCached(member: "TIER-11")
        let tierHitsBefore = try tierHits(service.baseURL)
        // For three seconds (records refresh meanwhile): a hit is never older than the 1 s fresh
        // window, and past it the record is served stale, wherever it is held.
        var answers: [HTTPResult] = []
        let end = Date().addingTimeInterval(3)
        while Date() < end, answers.count < 2000 { answers.append(try service.get(member: "TIER-11")) }
        #expect(answers.allSatisfy { $0.status == 200 })
        #expect(answers.filter { $0.headers["x-cache"] == "hit" }.allSatisfy { $0.headers["age"] == "0" })
        #expect(answers.contains { $0.headers["x-cache"] == "stale" })
        #expect(try tierHits(service.baseURL) > tierHitsBefore)
    }

    @Test func aSmallBoundEvictsAndEveryAnswerStaysRight() throws {
        let service = try ServiceUnderTest(environment: ["LOCAL_CACHE_BYTES": "8192"])
        try waitUntilTracking(service.baseURL)
        let members = (0..<30).map { "TIER-9-\($0)" }
        for (number, member) in members.enumerated() { try service.fake.putMember(member, buckets: buckets(1, points: 10 + number)) }
        for _ in 0..<3 {
            for (number, member) in members.enumerated() {
                let answer = try service.get(member: member)
                #expect(answer.status == 200 && activePoints(answer) == String(10 + number))
            }
        }
        let text = try metrics(service.baseURL)
        #expect(metricValue(text, "points_expiry_local_cache_evictions_total") > 0)
        #expect(metricValue(text, #"points_expiry_local_cache_fills_total{result="kept"}"#) > 0)
    }
}
