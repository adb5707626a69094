import Foundation
import Testing

/// BatchGetMemberExpirations and WarmMembers against real parts: redis-server, the fake
/// Voucherify, HTTP/2 curl.
@Suite(.serialized) struct BatchAndWarmTests {
    static let campaign = FakeVoucherify.campaignID
    static let batchPath = "/pointsexpiry.v1.PointsExpiryService/BatchGetMemberExpirations"
    static let warmPath = "/pointsexpiry.v1.PointsExpiryService/WarmMembers"

    func call(_ service: ServiceUnderTest, _ path: String, _ message: [String: Any], headers: [String] = []) throws -> HTTPResult {
        try CurlClient.request("POST", service.baseURL + path, body: try JSONSerialization.data(withJSONObject: message),
                               headers: ["content-type: application/json"] + headers, timeoutSeconds: 60)
    }

    func batch(_ service: ServiceUnderTest, _ members: [String], headers: [String] = []) throws -> [[String: Any]] {
        let answer = try call(service, Self.batchPath, ["campaign": Self.campaign, "members": members], headers: headers)
        #expect(answer.status == 200, "\(answer.text)")
        return answer.json["results"] as? [[String: Any]] ?? []
    }

    func warm(_ service: ServiceUnderTest, _ members: [String], force: Bool = false, headers: [String] = []) throws -> [String: Any] {
        let answer = try call(service, Self.warmPath, ["campaign": Self.campaign, "members": members, "force": force], headers: headers)
        #expect(answer.status == 200, "\(answer.text)")
        return answer.json
    }

    func memberCalls(_ service: ServiceUnderTest, _ member: String) throws -> Int {
        try service.fake.pageCalls().filter { $0.key.hasPrefix("\(Self.campaign)|\(member)|") }.values.reduce(0, +)
    }

    /// requested = warmed + alreadyFresh + failed + deferred, with every count read from the reply.
    func expectExactCounts(_ reply: [String: Any]) {
        let requested = reply["requested"] as? Int ?? -1
        let failed = (reply["failed"] as? [Any])?.count ?? 0
        let deferred = (reply["deferred"] as? [Any])?.count ?? 0
        #expect(requested == (reply["warmed"] as? Int ?? 0) + (reply["alreadyFresh"] as? Int ?? 0) + failed + deferred, "\(reply)")
    }

    // MARK: BatchGetMemberExpirations

    @Test func batchAnswersEveryPositionInOrderWithItsOwnOutcome() throws {
        let service = try ServiceUnderTest()
        for member in ["B-HIT", "B-MISS", "B-DOWN"] { try service.fake.putMember(member, buckets: buckets(2, points: 10)) }
        #expect(try service.get(member: "B-HIT").status == 200)
        #expect(try service.get(member: "NOPE-1").status == 404)
        try service.waitUntilCached(member: "B-HIT")
        try service.waitUntilCached(member: "NOPE-1")
        try service.fake.resetStats()

        let results = try batch(service, ["B-HIT", "NOPE-1", "B-MISS", "B-HIT", ""])
        #expect(results.map { $0["member"] as? String } == ["B-HIT", "NOPE-1", "B-MISS", "B-HIT", ""])
        #expect(results.map { $0["cache"] as? String } == ["hit", "", "miss", "hit", ""])
        let hit = results[0]["expiration"] as? [String: Any]
        #expect(hit?["activePoints"] as? String == "20")
        #expect(hit?["member"] as? String == "B-HIT")
        #expect(results[0]["error"] == nil)
        #expect((results[1]["error"] as? [String: Any])?["code"] as? String == "not_found")
        #expect(results[1]["expiration"] == nil)
        #expect((results[2]["expiration"] as? [String: Any])?["activePoints"] as? String == "20")
        #expect(results[2]["age"] as? String == "0")
        #expect((results[4]["error"] as? [String: Any])?["code"] as? String == "invalid_argument")
        // The duplicate was asked for once; only the miss reached Voucherify.
        #expect(try service.fake.totalCalls() == 1)

        // Voucherify down: the uncached member fails alone, the cached ones still answer.
        try service.fake.fail(["mode": "status", "status": 503])
        let degraded = try batch(service, ["B-HIT", "B-DOWN", "B-MISS"])
        #expect(degraded.map { $0["cache"] as? String } == ["hit", "", "hit"])
        #expect((degraded[1]["error"] as? [String: Any])?["code"] as? String == "unavailable")
    }

    @Test func anInvalidBatchIsInvalidArgumentNamingTheProblem() throws {
        let service = try ServiceUnderTest()
        let cases: [([String: Any], String)] = [
            (["campaign": Self.campaign, "members": [String]()], "members is empty or missing"),
            (["campaign": Self.campaign], "members is empty or missing"),
            (["campaign": Self.campaign, "members": (0...100).map { "M-\($0)" }], "101 card codes; at most 100"),
            (["campaign": Self.campaign, "members": "M-1"], #"expected {"campaign": string, "members": [string, ...]"#),
            (["campaign": Self.campaign, "members": ["M-1", 7]], "a string is malformed; expected {"),
            (["members": ["M-1"]], "campaign is required"),
            (["campaign": Self.campaign, "members": ["M-1"], "expiringBefore": "2026-02-30"], "expiring_before"),
        ]
        for (message, problem) in cases {
            let answer = try call(service, Self.batchPath, message)
            #expect(answer.status == 400)
            #expect(answer.json["code"] as? String == "invalid_argument")
            #expect((answer.json["message"] as? String)?.contains(problem) == true, "\(answer.text) should name \(problem)")
        }
        #expect(try service.fake.totalCalls() == 0)
    }

    @Test func batchIsServedOverConnectGet() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("G-1", buckets: buckets(1, points: 7))
        let message = #"{"campaign":"\#(Self.campaign)","members":["G-1","G-1"],"expiringBefore":"2099-01-01"}"#
        let query = "encoding=json&message=" + message.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let answer = try CurlClient.request("GET", service.baseURL + Self.batchPath + "?" + query)
        #expect(answer.status == 200, "\(answer.text)")
        let results = answer.json["results"] as? [[String: Any]] ?? []
        #expect(results.count == 2)
        #expect(results.allSatisfy { ($0["expiration"] as? [String: Any])?["pointsExpiringBefore"] as? String == "7" })
    }

    @Test func aMemberWithoutAnAnswerByTheDeadlineFailsAloneAndInTime() throws {
        let service = try ServiceUnderTest()
        for member in ["D-SLOW", "D-FAST"] { try service.fake.putMember(member, buckets: buckets(1)) }
        try service.fake.hold(member: "D-SLOW")
        defer { _ = try? service.fake.release() }
        let results = try batch(service, ["D-SLOW", "D-FAST"], headers: ["connect-timeout-ms: 1500"])
        #expect((results[0]["error"] as? [String: Any])?["code"] as? String == "deadline_exceeded")
        #expect(results[1]["cache"] as? String == "miss")
    }

    // MARK: WarmMembers

    @Test func warmCountsExactlyAndSkipsFreshMembersUnlessForced() throws {
        let service = try ServiceUnderTest()
        for member in ["W-1", "W-2", "W-3"] { try service.fake.putMember(member, buckets: buckets(1)) }
        #expect(try service.get(member: "W-1").status == 200)
        try service.waitUntilCached(member: "W-1")
        try service.fake.resetStats()

        let first = try warm(service, ["W-1", "W-2", "W-3", "NOPE-2", "W-1", ""])
        #expect(first["requested"] as? Int == 6)
        #expect(first["warmed"] as? Int == 2)
        #expect(first["alreadyFresh"] as? Int == 2)
        let failed = first["failed"] as? [[String: Any]] ?? []
        #expect(failed.map { $0["member"] as? String } == ["NOPE-2", ""])
        #expect(failed.map { $0["code"] as? String } == ["not_found", "invalid_argument"])
        #expect((first["deferred"] as? [Any])?.isEmpty == true)
        expectExactCounts(first)
        #expect(try memberCalls(service, "W-1") == 0)
        #expect(try memberCalls(service, "W-2") == 1)
        // Warmed means cached: the next caller hits.
        try service.waitUntilCached(member: "W-3")
        #expect(try service.get(member: "W-3").headers["x-cache"] == "hit")

        let forced = try warm(service, ["W-1", "W-2", "W-3"], force: true)
        #expect(forced["warmed"] as? Int == 3)
        #expect(forced["alreadyFresh"] as? Int == 0)
        expectExactCounts(forced)
        #expect(try memberCalls(service, "W-1") == 1)
        let metrics = try CurlClient.request("GET", service.baseURL + "/metrics").text
        #expect(metricValue(metrics, #"points_expiry_warm_members_total{outcome="warmed"}"#) == 5)
    }

    @Test func membersNotReachedByTheDeadlineComeBackDeferred() throws {
        let service = try ServiceUnderTest()
        for member in ["DL-1", "DL-2"] { try service.fake.putMember(member, buckets: buckets(1)) }
        try service.fake.hold(member: "DL-1")
        defer { _ = try? service.fake.release() }
        let reply = try warm(service, ["DL-1", "DL-2"], headers: ["connect-timeout-ms: 1500"])
        #expect(reply["deferred"] as? [String] == ["DL-1"])
        #expect(reply["warmed"] as? Int == 1)
        expectExactCounts(reply)
    }

    @Test func anInvalidationDuringAWarmWins() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("WH-1", buckets: buckets(1, points: 10))
        try service.fake.hold(member: "WH-1")
        let reply = LockedArray<[String: Any]>()
        let warming = Thread { if let answer = try? self.warm(service, ["WH-1"]) { reply.append(answer) } }
        warming.start()
        try waitUntil("the warm's read is held at the fake") { try service.fake.heldCount() == 1 }
        let invalidate = try call(service, "/pointsexpiry.v1.PointsExpiryService/InvalidateMember", ["campaign": Self.campaign, "member": "WH-1"])
        #expect(invalidate.status == 200)
        try service.fake.putMember("WH-1", buckets: buckets(1, points: 99))
        #expect(try service.fake.release(member: "WH-1") == 1)
        try waitUntil("the warm answered") { reply.all.count == 1 }
        // The read that began before the invalidation was not stored: the next caller reads again.
        #expect(try service.redis.cli("HEXISTS", answersKey("WH-1"), Self.campaign) == "0")
        let next = try service.get(member: "WH-1")
        #expect(next.headers["x-cache"] == "miss")
        #expect(next.json["activePoints"] as? String == "99")
    }

    @Test func warmingLeavesTheInteractiveReserveToCallers() throws {
        // Voucherify allows 40 calls a minute, and so does the budget: warming may spend only
        // while more than half of it is left, so callers find the other half untouched.
        let service = try ServiceUnderTest(environment: ["VOUCHERIFY_RATE_LIMIT": "40/min", "VOUCHERIFY_INTERACTIVE_RESERVE": "0.5"],
                                           fakeArguments: ["--members", "400", "--rate-limit", "40", "--rate-limit-window", "60",
                                                           "--enforce-rate-limit"])
        let warmMembers = (1...300).map { String(format: "MEMBER-%06d", $0) }
        let reply = LockedArray<[String: Any]>()
        let warming = Thread {
            if let answer = try? self.warm(service, warmMembers, headers: ["connect-timeout-ms: 6000"]) { reply.append(answer) }
        }
        warming.start()
        // Callers come once the warm has spent what it may (or finished).
        try waitUntil("the warm has spent its share of the budget") { try service.fake.totalCalls() >= 20 || !reply.all.isEmpty }
        var interactive: [HTTPResult] = []
        for n in 301...320 {
            interactive.append(try service.get(member: String(format: "MEMBER-%06d", n)))
        }
        try waitUntil("the warm answered") { reply.all.count == 1 }
        #expect(interactive.allSatisfy { $0.status == 200 && $0.headers["x-cache"] == "miss" }, "\(interactive.map(\.text))")
        let warmed = reply.all[0]
        expectExactCounts(warmed)
        // The warm read at most the half of the 40 left to warming, and deferred the rest.
        #expect((1...20).contains(warmed["warmed"] as? Int ?? 0), "\(warmed)")
        #expect((warmed["deferred"] as? [Any])?.count == 300 - (warmed["warmed"] as? Int ?? 0))
        // Voucherify never had to refuse anyone, and no caller was refused a token.
        #expect(try service.fake.stats().rateLimited == 0)
        let metrics = try CurlClient.request("GET", service.baseURL + "/metrics").text
        #expect(metricValue(metrics, #"points_expiry_rate_budget_refusals_total{class="interactive"}"#) == 0)
    }

    @Test func aWarmWhoseCallerWentAwayReadsNoMoreMembers() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--members", "20"])
        let members = (1...20).map { String(format: "MEMBER-%06d", $0) }
        let warmingSlots = 8 // a worker's warming reads at once (MemberAnswers.maxWarmingReads)
        try service.fake.hold()
        // The caller gives up while its first 8 reads (one worker's warming slots) are held.
        let gaveUp = LockedArray<Bool>()
        let impatient = Thread {
            _ = try? CurlClient.request("POST", service.baseURL + Self.warmPath,
                                        body: try? JSONSerialization.data(withJSONObject: ["campaign": Self.campaign, "members": members]),
                                        headers: ["content-type: application/json"], timeoutSeconds: 3)
            gaveUp.append(true)
        }
        impatient.start()
        try waitUntil("the warm's first reads are held") { try service.fake.heldCount() == warmingSlots }
        try waitUntil("the caller gave up") { gaveUp.all.count == 1 }
        try service.fake.release()
        try waitUntil("the held reads were stored") {
            try members.filter { try service.redis.cli("HEXISTS", answersKey($0), Self.campaign) == "1" }.count == warmingSlots
        }
        // The 12 members still waiting for a slot were dropped, not read.
        #expect(try service.fake.totalCalls() == warmingSlots)
        let metrics = try CurlClient.request("GET", service.baseURL + "/metrics").text
        #expect(metricValue(metrics, #"points_expiry_warm_members_total{outcome="deferred"}"#) == 20)
    }
}
