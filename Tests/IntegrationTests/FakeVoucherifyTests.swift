import Foundation
import Testing

/// The fake Voucherify's controls for testing how a caller spares Voucherify: reads held open,
/// the enforced rate-limit window, the concurrency high-water marks and counted failures.
@Suite(.serialized) struct FakeVoucherifyTests {
    private let memberKey = "\(FakeVoucherify.campaignID)|MEMBER-000001"
    private let otherMemberKey = "\(FakeVoucherify.campaignID)|MEMBER-000002"

    @Test func heldCallIsAnsweredOnReleaseWithTheDataAsItIsThen() throws {
        let fake = try FakeVoucherify()
        try fake.putMember("HELD", buckets: buckets(1))
        try fake.hold(member: "HELD")
        let call = inBackground { try fake.apiCall(member: "HELD") }
        try waitUntil("the call is held") { try fake.heldCount() == 1 }
        #expect(!call.isFinished)
        #expect(try fake.stats().calls == 1)  // counted on arrival

        try fake.putMember("HELD", buckets: buckets(2))
        #expect(try fake.release(member: "HELD") == 1)
        let answer = try call()
        #expect(answer.status == 200)
        #expect(answer.json["total"] as? Int == 2)
        #expect(try fake.heldCount() == 0)
        // The release lifted the rule: the next call is answered at once, not after 30 s.
        #expect(try fake.apiCall(member: "HELD", timeoutSeconds: 10).status == 200)
    }

    @Test func heldCallIsAnsweredWhenItsHoldTimeIsUp() throws {
        let fake = try FakeVoucherify()
        try fake.hold(member: "MEMBER-000001", holdMilliseconds: 300)
        let started = ContinuousClock.now
        let answer = try fake.apiCall(member: "MEMBER-000001")
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(answer.status == 200)
        #expect(try fake.heldCount() == 0)
        // The rule stays until released.
        #expect((try fake.control("GET", "hold", nil)["rules"] as? [Any])?.count == 1)
    }

    @Test func rulesMatchEitherCampaignSpellingAndReleaseLiftsOnlyWhatItNames() throws {
        let fake = try FakeVoucherify()
        try fake.hold(campaign: FakeVoucherify.campaignName)  // every member; the calls below use the id
        try fake.hold(member: "MEMBER-000001")
        let first = inBackground { try fake.apiCall(member: "MEMBER-000001") }
        let second = inBackground { try fake.apiCall(member: "MEMBER-000002") }
        try waitUntil("both calls are held") { try fake.heldCount() == 2 }

        // Releasing one member answers its call and leaves the hold on the whole campaign.
        #expect(try fake.release(member: "MEMBER-000001") == 1)
        #expect(try first().status == 200)
        #expect(try fake.heldCount() == 1)
        #expect(!second.isFinished)
        #expect((try fake.control("GET", "hold", nil)["rules"] as? [[String: Any]])?.first?["campaign"] as? String
            == FakeVoucherify.campaignName)

        #expect(try fake.release() == 1)
        #expect(try second().status == 200)
        #expect((try fake.control("GET", "hold", nil)["rules"] as? [Any])?.isEmpty == true)
    }

    @Test func badHoldRequestsAreRefused() throws {
        let fake = try FakeVoucherify()
        #expect(throws: TestFailure.self) { try fake.hold(member: "") }
        #expect(throws: TestFailure.self) { try fake.hold(holdMilliseconds: 0) }
        #expect(throws: TestFailure.self) { try fake.hold(holdMilliseconds: 600_001) }
        #expect((try fake.control("GET", "hold", nil)["rules"] as? [Any])?.isEmpty == true)
    }

    @Test func releasingACallWhoseClientGaveUpHarmsNothing() throws {
        let fake = try FakeVoucherify()
        try fake.hold(member: "MEMBER-000001")
        let abandoned = inBackground { try fake.apiCall(member: "MEMBER-000001", timeoutSeconds: 2) }
        try waitUntil("the call is held") { try fake.heldCount() == 1 }
        #expect(throws: TestFailure.self) { try abandoned() }  // curl gave up: no HTTP answer

        try fake.release()
        #expect(try fake.heldCount() == 0)
        #expect(try fake.apiCall(member: "MEMBER-000001").status == 200)
        #expect(fake.isRunning)
    }

    @Test func enforcedWindowRefusesCallsPastTheLimitUntilItEnds() throws {
        let fake = try FakeVoucherify()
        var answers: [HTTPResult] = []
        // Setting the limit starts a fresh window. On a machine too slow to make four calls within
        // 2 s the window rolls between them (the calls disagree on when it ends): start again.
        try waitUntil("four calls land in one 2 s window") {
            try fake.setRateLimit(limit: 3, windowSeconds: 2, enforce: true)
            try fake.resetStats()
            answers = try (0..<4).map { _ in try fake.apiCall(member: "MEMBER-000001") }
            return Set(answers.map { $0.headers["x-rate-limit-retry"] }).count == 1
        }
        #expect(answers.map(\.status) == [200, 200, 200, 429])
        #expect(answers.map { $0.headers["x-rate-limit-remaining"] } == ["2", "1", "0", "0"])
        #expect(answers.allSatisfy { $0.headers["x-rate-limit-limit"] == "3" })
        #expect(answers.allSatisfy { $0.headers["x-rate-limit-type"] == "requests_per_2_seconds" })
        let refused = answers[3]
        #expect(refused.json["code"] as? Int == 429)
        #expect(Int(refused.headers["retry-after"] ?? "").map { (1...2).contains($0) } == true)
        let windowEnd = Int(refused.headers["x-rate-limit-retry"] ?? "") ?? 0
        let now = Int(Date().timeIntervalSince1970)
        #expect((now - 1...now + 3).contains(windowEnd))

        let stats = try fake.stats()
        #expect(stats.calls == 4)
        #expect(stats.rateLimited == 1)
        #expect(stats.maxInWindow == 4)
        #expect(stats.failed == 0)

        // Once the window is over, calls are allowed again.
        try waitUntil("the window has ended") { try fake.control("GET", "rate-limit", nil)["used"] as? Int == 0 }
        let later = try fake.apiCall(member: "MEMBER-000001")
        #expect(later.status == 200)
        #expect(later.headers["x-rate-limit-remaining"] == "2")
        #expect(try fake.stats().rateLimited == 1)
    }

    @Test func rateLimitFlagsSetTheStartingWindow() throws {
        let fake = try FakeVoucherify(arguments: ["--rate-limit", "5", "--rate-limit-window", "3600", "--enforce-rate-limit"])
        let before = try fake.control("GET", "rate-limit", nil)
        #expect(before["limit"] as? Int == 5)
        #expect(before["window_seconds"] as? Int == 3600)
        #expect(before["enforce"] as? Bool == true)
        #expect(before["used"] as? Int == 0)
        #expect(before["window_ends_at"] is NSNull)

        let answer = try fake.apiCall(member: "MEMBER-000001")
        #expect(answer.headers["x-rate-limit-type"] == "requests_per_hour")
        #expect(answer.headers["x-rate-limit-remaining"] == "4")
        let after = try fake.control("GET", "rate-limit", nil)
        #expect(after["remaining"] as? Int == 4)
        #expect(after["window_ends_at"] as? Int == Int(answer.headers["x-rate-limit-retry"] ?? ""))
    }

    @Test func concurrencyHighWaterMarksCountCallsUntilAnswered() throws {
        let fake = try FakeVoucherify()
        try fake.hold(member: "MEMBER-000001")
        let held = (0..<3).map { _ in inBackground { try fake.apiCall(member: "MEMBER-000001") } }
        try waitUntil("three calls are held") { try fake.heldCount() == 3 }
        #expect(try fake.apiCall(member: "MEMBER-000002").status == 200)  // alongside the held three

        let during = try fake.stats()
        #expect(during.maxConcurrent == 4)
        #expect(during.byMemberMaxConcurrent == [memberKey: 3, otherMemberKey: 1])
        try fake.release()
        for call in held { #expect(try call().status == 200) }

        // A reset starts the marks again from the calls in progress: none now.
        try fake.resetStats()
        let reset = try fake.stats()
        #expect(reset.maxConcurrent == 0)
        #expect(reset.byMemberMaxConcurrent.isEmpty)
        for _ in 0..<2 { _ = try fake.apiCall(member: "MEMBER-000002") }
        let sequential = try fake.stats()
        #expect(sequential.maxConcurrent == 1)
        #expect(sequential.byMemberMaxConcurrent == [otherMemberKey: 1])
    }

    @Test func dropsTheNextNCallsThenAnswersAndCountsEveryInjectedFailure() throws {
        let fake = try FakeVoucherify()
        func remaining() throws -> Any? { try fake.control("GET", "fail", nil)["remaining"] }
        try fake.fail(["mode": "drop", "count": 2])
        #expect(try remaining() as? Int == 2)
        #expect(throws: TestFailure.self) { try fake.apiCall(member: "MEMBER-000001") }  // no HTTP answer
        #expect(try remaining() as? Int == 1)
        #expect(throws: TestFailure.self) { try fake.apiCall(member: "MEMBER-000001") }
        #expect(try fake.control("GET", "fail", nil)["mode"] as? String == "none")
        #expect(try fake.apiCall(member: "MEMBER-000001").status == 200)

        try fake.fail(["mode": "status", "status": 503, "count": 1])
        #expect(try fake.apiCall(member: "MEMBER-000001").status == 503)
        let stats = try fake.stats()
        #expect(stats.calls == 4)
        #expect(stats.failed == 3)
        #expect(stats.rateLimited == 0)
        #expect(stats.maxConcurrent == 1)  // a dropped call ends too
        #expect(stats.byMember == [memberKey: 4])
    }
}
