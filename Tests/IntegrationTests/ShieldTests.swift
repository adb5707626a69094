import Foundation
import Testing

/// The cache as Voucherify's shield, with two replicas of the built binary (two workers each)
/// sharing one Redis and the fake: single-flight, negative caching, stale answers instead of
/// errors, the deduction-instant rule, and fencing of background refreshes.
@Suite struct ShieldTests {
    static let campaign = FakeVoucherify.campaignID

    /// Upstream calls for one member, per page.
    func pageCalls(_ fleet: Fleet, member: String) throws -> [String: Int] {
        try fleet.fake.pageCalls().filter { $0.key.hasPrefix("\(Self.campaign)|\(member)|") }
    }

    func memberCalls(_ fleet: Fleet, member: String) throws -> Int {
        try pageCalls(fleet, member: member).values.reduce(0, +)
    }

    @Test func concurrentCallersShareOneReadPerPageAcrossTheFleet() throws {
        let fleet = try Fleet()
        try fleet.fake.putMember("SF-1", buckets: buckets(250)) // three pages of 100
        try fleet.fake.control("POST", "latency", ["latency_ms": 300])
        let results = try fleet.burst(member: "SF-1", count: 200)
        #expect(results.filter { $0.status == 200 }.count == 200)
        #expect(try pageCalls(fleet, member: "SF-1") == ["\(Self.campaign)|SF-1|1": 1, "\(Self.campaign)|SF-1|2": 1, "\(Self.campaign)|SF-1|3": 1])
        // Callers on the reading worker joined its read; the other workers and replica waited on the lease.
        let joins = try fleet.replicas.map { try metricValue($0.metrics(), #"points_expiry_single_flight_joins_total{scope="worker"}"#) }
        #expect(joins.reduce(0, +) > 0)
    }

    @Test func unknownMembersAreRememberedForTheNotFoundWindow() throws {
        let fleet = try Fleet()
        let results = try fleet.burst(member: "NOPE-1", count: 100)
        #expect(results.allSatisfy { $0.status == 404 })
        for replica in fleet.replicas { #expect(try replica.get(member: "NOPE-1").code == "not_found") }
        #expect(try memberCalls(fleet, member: "NOPE-1") == 1)
        // Nothing long-lived is left behind for a name nobody will ask for again.
        #expect((Int(try fleet.redis.cli("PTTL", "pe:{NOPE-1}:gen")) ?? .max) <= 20_000)
        #expect((Int(try fleet.redis.cli("PTTL", "pe:{NOPE-1}:answers")) ?? .max) <= 60_000)
        // InvalidateMember drops the remembered not-found like any answer.
        try fleet.fake.putMember("NOPE-1", buckets: buckets(1))
        let invalidate = try CurlClient.request("POST", fleet.replicas[0].baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember",
                                                body: Data(#"{"campaign":"\#(Self.campaign)","member":"NOPE-1"}"#.utf8),
                                                headers: ["content-type: application/json"])
        #expect(invalidate.json["invalidated"] as? Bool == true)
        #expect(try fleet.replicas[1].get(member: "NOPE-1").status == 200)
    }

    @Test func aFailingVoucherifyGetsStaleAnswersAndFewCalls() throws {
        let fleet = try Fleet(environment: ["CACHE_TTL_SECONDS": "1", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "0",
                                            "CACHE_STALE_IF_ERROR_SECONDS": "3600"])
        let members = (0..<5).map { "SIE-\($0)" }
        for member in members {
            try fleet.fake.putMember(member, buckets: buckets(1))
            #expect(try fleet.replicas[0].get(member: member).status == 200)
        }
        try waitUntilPast(Date().addingTimeInterval(1.1))
        try fleet.fake.resetStats()
        try fleet.fake.fail(["mode": "status", "status": 503])
        var results: [BurstResult] = []
        for member in members { results += try fleet.burst(member: member, count: 40) }
        #expect(results.count == 200)
        #expect(results.allSatisfy { $0.status == 200 && $0.cache == "stale" })
        // Reads back off (fleet-wide failure markers, circuit breaker): far fewer than requests.
        #expect(try fleet.fake.totalCalls() <= 40)
    }

    @Test func noCacheReadsThroughAndMaxAgeBoundsTheAge() throws {
        let fleet = try Fleet()
        try fleet.fake.putMember("DIR-1", buckets: buckets(1))
        #expect(try fleet.replicas[0].get(member: "DIR-1").headers["x-cache"] == "miss")
        try waitUntil("the answer is cached") { try fleet.redis.cli("HEXISTS", answersKey("DIR-1"), Self.campaign) == "1" }
        #expect(try fleet.replicas[1].get(member: "DIR-1").headers["x-cache"] == "hit")
        #expect(try fleet.replicas[1].get(member: "DIR-1", headers: ["cache-control: no-cache"]).headers["x-cache"] == "miss")
        #expect(try memberCalls(fleet, member: "DIR-1") == 2)
        try waitUntilPast(Date().addingTimeInterval(1.1))
        #expect(try fleet.replicas[0].get(member: "DIR-1", headers: ["cache-control: max-age=0"]).headers["x-cache"] == "miss")
        #expect(try memberCalls(fleet, member: "DIR-1") == 3)
    }

    /// Midnight passed, but Voucherify's nightly job has not: the due bucket is still listed.
    /// The answer is read once and cached (not re-read on every request for hours).
    @Test func anAnswerStillListingDueBucketsIsCachedAfterOneRead() throws {
        let fleet = try Fleet()
        let yesterday = ISO8601DateFormatter.string(from: Date().addingTimeInterval(-86_400), timeZone: TimeZone(identifier: "UTC")!,
                                                    formatOptions: [.withFullDate])
        try fleet.fake.putMember("MID-1", buckets: [["id": "lopb_due", "points": 7, "status": "ACTIVE", "expires_at": yesterday]])
        #expect(try fleet.replicas[0].get(member: "MID-1").headers["x-cache"] == "miss")
        try waitUntil("the answer is cached") { try fleet.redis.cli("HEXISTS", answersKey("MID-1"), Self.campaign) == "1" }
        for replica in fleet.replicas { #expect(try replica.get(member: "MID-1").headers["x-cache"] == "hit") }
        #expect(try memberCalls(fleet, member: "MID-1") == 1)
    }

    // MARK: Reads held open at the fake

    /// Row "2,000 entries expiring at once": every caller gets the stale answer at once while one
    /// refresh per member runs for the whole fleet (held open at the fake, so none can finish and
    /// let a second one start).
    @Test func expiredEntriesAreServedStaleWhileOneRefreshPerMemberRuns() throws {
        let fleet = try Fleet(environment: ["CACHE_TTL_SECONDS": "1", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "600"])
        let members = (0..<5).map { "SWR-\($0)" }
        for member in members {
            try fleet.fake.putMember(member, buckets: buckets(1))
            #expect(try fleet.replicas[0].get(member: member).status == 200)
        }
        try waitUntil("every answer is cached") {
            try members.allSatisfy { try fleet.redis.cli("HEXISTS", answersKey($0), Self.campaign) == "1" }
        }
        try waitUntilPast(Date().addingTimeInterval(1.1))
        try fleet.fake.hold(member: nil, campaign: nil, holdMilliseconds: 60_000)
        try fleet.fake.resetStats()
        var results: [BurstResult] = []
        for member in members { results += try fleet.burst(member: member, count: 20) }
        #expect(results.count == 100)
        #expect(results.allSatisfy { $0.status == 200 && $0.cache == "stale" })
        // Checked at once: a held call times out after Voucherify's 5 s page timeout and is retried.
        for member in members { #expect(try memberCalls(fleet, member: member) == 1) }
        try waitUntil("one refresh per member is held at the fake") { try fleet.fake.heldCount() == members.count }
        try fleet.fake.release(member: nil)
        try waitUntil("the refreshed answers are fresh again") {
            try members.allSatisfy { try fleet.replicas[1].get(member: $0).headers["x-cache"] == "hit" }
        }
    }

    /// A background refresh in flight when the member is invalidated stores nothing.
    @Test func aRefreshInFlightWhenTheMemberIsInvalidatedStoresNothing() throws {
        let fleet = try Fleet(environment: ["CACHE_TTL_SECONDS": "1", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "600"])
        try fleet.fake.putMember("FENCE-1", buckets: buckets(1, points: 10))
        #expect(try fleet.replicas[0].get(member: "FENCE-1").status == 200)
        try waitUntil("the answer is cached") { try fleet.redis.cli("HEXISTS", answersKey("FENCE-1"), Self.campaign) == "1" }
        try waitUntilPast(Date().addingTimeInterval(1.1))
        try fleet.fake.hold(member: "FENCE-1", campaign: nil, holdMilliseconds: 60_000)
        #expect(try fleet.replicas[0].get(member: "FENCE-1").headers["x-cache"] == "stale")
        try waitUntil("the refresh is held at the fake") { try fleet.fake.heldCount() == 1 }

        let invalidate = try CurlClient.request("POST", fleet.replicas[1].baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember",
                                                body: Data(#"{"campaign":"\#(Self.campaign)","member":"FENCE-1"}"#.utf8),
                                                headers: ["content-type: application/json"])
        #expect(invalidate.json["invalidated"] as? Bool == true)
        try fleet.fake.putMember("FENCE-1", buckets: buckets(1, points: 99))
        try fleet.fake.release(member: "FENCE-1")
        let lease = "pe:{FENCE-1}:lease:\(Self.campaign)"
        try waitUntil("the refresh ended and gave its lease back") { try fleet.redis.cli("EXISTS", lease) == "0" }
        #expect(try fleet.redis.cli("HEXISTS", answersKey("FENCE-1"), Self.campaign) == "0")
        let after = try fleet.replicas[1].get(member: "FENCE-1")
        #expect(after.headers["x-cache"] == "miss")
        #expect(after.json["activePoints"] as? String == "99")
    }

    /// A caller past its deadline gets `deadline_exceeded`; the read goes on and fills the cache
    /// (one upstream call in all).
    @Test func aCallerPastItsDeadlineGivesUpButTheReadFillsTheCache() throws {
        let fleet = try Fleet()
        try fleet.fake.putMember("DL-1", buckets: buckets(1))
        try fleet.fake.hold(member: "DL-1", campaign: nil, holdMilliseconds: 60_000)
        for replica in fleet.replicas {
            let late = try replica.get(member: "DL-1", headers: ["connect-timeout-ms: 300"])
            #expect(late.status == 504)
            #expect(late.code == "deadline_exceeded")
        }
        try fleet.fake.release(member: "DL-1")
        try waitUntil("the read filled the cache") { try fleet.redis.cli("HEXISTS", answersKey("DL-1"), Self.campaign) == "1" }
        #expect(try fleet.replicas[1].get(member: "DL-1").headers["x-cache"] == "hit")
        #expect(try memberCalls(fleet, member: "DL-1") == 1)
    }

    /// The replica holding the lease dies mid-read: the lease expires and the next caller reads.
    @Test func aLeaseWhoseHolderDiedExpiresAndTheNextCallerReads() throws {
        let fleet = try Fleet()
        try fleet.fake.putMember("DEAD-1", buckets: buckets(1))
        try fleet.fake.hold(member: "DEAD-1", campaign: nil, holdMilliseconds: 60_000)
        let doomed = try ChildProcess("/usr/bin/curl", ["-s", "--http2-prior-knowledge", "--max-time", "60", "-o", "/dev/null",
                                                        fleet.replicas[0].getURL(member: "DEAD-1", campaign: Self.campaign)])
        defer { doomed.stop() }
        try waitUntil("replica 0 holds the read open at the fake") { try fleet.fake.heldCount() == 1 }
        fleet.crash(0)
        try fleet.fake.release(member: "DEAD-1")
        let survivor = try fleet.replicas[1].get(member: "DEAD-1")
        #expect(survivor.status == 200)
        #expect(try memberCalls(fleet, member: "DEAD-1") == 2)
    }

    // MARK: Rate budget

    /// Row "429 with Retry-After: 20, 2 replicas": one fleet-wide gate. After the 429 no replica
    /// calls Voucherify; callers get `resource_exhausted` with `retry-after`, or a stale answer.
    @Test func a429StopsEveryReplicaUntilTheAnnouncedTime() throws {
        let fleet = try Fleet(environment: ["CACHE_TTL_SECONDS": "1", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "0"])
        for member in ["RL-STALE", "RL-1", "RL-2", "RL-3"] { try fleet.fake.putMember(member, buckets: buckets(1)) }
        #expect(try fleet.replicas[1].get(member: "RL-STALE").status == 200)
        try waitUntil("the answer is cached") { try fleet.redis.cli("HEXISTS", answersKey("RL-STALE"), Self.campaign) == "1" }
        try waitUntilPast(Date().addingTimeInterval(1.1))

        try fleet.fake.fail(["mode": "rate_limit", "retry_after": 20, "count": 1])
        let limited = try fleet.replicas[0].get(member: "RL-1")
        #expect(limited.status == 429)
        #expect(limited.headers["retry-after"] == "20")
        let callsAfter429 = try fleet.fake.totalCalls()
        for member in ["RL-2", "RL-3"] {
            let refused = try fleet.replicas[1].get(member: member)
            #expect(refused.code == "resource_exhausted")
            #expect((Int(refused.headers["retry-after"] ?? "") ?? 0) >= 10)
        }
        let stale = try fleet.replicas[1].get(member: "RL-STALE")
        #expect(stale.status == 200)
        #expect(stale.headers["x-cache"] == "stale")
        #expect(try fleet.fake.totalCalls() == callsAfter429)
    }

    /// Row "warming loop on a 2,000/min plan", at test scale: more distinct members than the plan
    /// allows per window, from both replicas at once. The shared budget keeps Voucherify under its
    /// limit (it never has to answer 429); callers that cannot wait get `resource_exhausted`
    /// with `retry-after`.
    @Test func theSharedBudgetNeverExceedsThePlan() throws {
        let fleet = try Fleet(environment: ["VOUCHERIFY_RATE_LIMIT": "10/sec"],
                              fakeArguments: ["--rate-limit", "40", "--rate-limit-window", "2", "--enforce-rate-limit"])
        let members = (0..<60).map { "BUD-\($0)" }
        for member in members { try fleet.fake.putMember(member, buckets: buckets(1)) }
        try fleet.fake.resetStats()
        let codes = LockedArray<String>()
        let group = DispatchGroup()
        for (index, member) in members.enumerated() {
            group.enter()
            // One thread per caller, so all 60 are in flight together.
            Thread.detachNewThread {
                let result = try? fleet.replicas[index % 2].get(member: member, headers: ["connect-timeout-ms: 1500"])
                codes.append(result.map { "\($0.status) \($0.headers["retry-after"] == nil ? "-" : "retry-after")" } ?? "no answer")
                group.leave()
            }
        }
        group.wait()
        let stats = try fleet.fake.stats()
        #expect(stats.rateLimited == 0)
        #expect(stats.maxInWindow <= 40)
        let answered = codes.all
        #expect(answered.count == members.count)
        #expect(answered.allSatisfy { $0 == "200 -" || $0 == "429 retry-after" || $0 == "504 -" })
        #expect(answered.contains("200 -"))
        // More callers than the budget: some had to wait for a token or were refused.
        let held = try fleet.replicas.map { replica in
            let text = try replica.metrics()
            return metricValue(text, #"points_expiry_rate_budget_waits_total{class="interactive"}"#)
                + metricValue(text, #"points_expiry_rate_budget_refusals_total{class="interactive"}"#)
        }
        #expect(held.reduce(0, +) > 0)
    }

    /// A record an older release wrote (another format) is read again, not waited on forever.
    @Test func aRecordOfAnotherFormatIsReadAgain() throws {
        let fleet = try Fleet()
        try fleet.fake.putMember("OLD-1", buckets: buckets(1))
        _ = try fleet.redis.cli("HSET", answersKey("OLD-1"), Self.campaign, "pe1-an-old-record-format")
        let answer = try fleet.replicas[0].get(member: "OLD-1", headers: ["connect-timeout-ms: 5000"])
        #expect(answer.status == 200)
        #expect(answer.headers["x-cache"] == "miss")
    }
}

/// The value of one sample line (`name{labels} value`) in Prometheus text, whole (gauges print
/// `1.0`); 0 when absent.
func metricValue(_ text: String, _ sample: String) -> Int {
    text.split(separator: "\n").first { $0.hasPrefix(sample + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
}
