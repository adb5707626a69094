import EventLoop
import ExpiryDomain
import Foundation
import HTTPClient
import Logging
import Synchronization
import TestSupport
import Testing
import Voucherify

/// What the service lets through to Voucherify, to Redis and to its callers: no dot segment
/// changes an upstream URL, Voucherify's and Redis' own words stay in the logs, names Voucherify
/// does not know leave nothing in Redis beyond their negative answer, and upstream failures are
/// logged once a minute per class.
@Suite(.serialized) struct HygieneTests {
    private static let campaign = FakeVoucherify.campaignID

    /// `.` and `..` as a member or campaign are refused before any upstream call; codes that only
    /// contain dots or slashes reach the fake as one encoded segment of the one points-expiration
    /// URL, never as another URL.
    @Test func dotSegmentsNeverChangeTheUpstreamURL() throws {
        let service = try ServiceUnderTest()
        try service.fake.resetStats()
        for (campaign, member) in [(Self.campaign, "."), (Self.campaign, ".."), ("..", "MEMBER-000001"), (".", "MEMBER-000001")] {
            let answer = try service.get(member: member, campaign: campaign)
            #expect(answer.status == 400, "\(campaign) / \(member): \(answer.text)")
            #expect(answer.code == "invalid_argument")
        }
        let prefix = "/v1/loyalties/\(Self.campaign)/members/"
        let cases: [(campaign: String, member: String, path: String)] = [
            (Self.campaign, "../MEMBER-000001", prefix + "..%2FMEMBER-000001/points-expiration"),
            (Self.campaign, "%2F", prefix + "%252F/points-expiration"),
            (Self.campaign, "...", prefix + ".../points-expiration"),
            ("./..", "MEMBER-000001", "/v1/loyalties/.%2F../members/MEMBER-000001/points-expiration"),
        ]
        for (campaign, member, _) in cases {
            let answer = try service.get(member: member, campaign: campaign)
            #expect(answer.status == 404, "\(campaign) / \(member): \(answer.text)")
            #expect(answer.code == "not_found")
        }
        let paths = try #require(try service.fake.control("GET", "stats", nil)["paths"] as? [String])
        #expect(Set(paths) == Set(cases.map(\.path)))
        #expect(!paths.contains("/v1/members/MEMBER-000001/points-expiration"))
    }

    /// Voucherify's explanation of an unexpected refusal may echo what we sent; callers get our
    /// words for the status instead.
    @Test func voucherifysRefusalTextIsNotPassedThrough() throws {
        let service = try ServiceUnderTest()
        for (status, words) in [(400, "malformed"), (422, "could not be processed")] {
            try service.fake.fail(["mode": "status", "status": status, "count": 1, "content_type": "application/json",
                                   "body": #"{"code":\#(status),"message":"UPSTREAM-TEXT-\#(status)","details":"x-app-token=abc"}"#])
            let answer = try service.get(member: "REFUSED-\(status)")
            #expect(answer.status == 500)
            #expect(answer.code == "internal")
            let message = answer.json["message"] as? String ?? ""
            #expect(message.contains("HTTP \(status)") && message.contains(words), "\(message)")
            #expect(!message.contains("UPSTREAM-TEXT") && !message.contains("x-app-token"), "\(message)")
        }
    }

    /// A Redis out of memory refuses the invalidation script: the caller learns the cache is
    /// unavailable and why, in a word, without the script or Redis' raw reply.
    @Test func aRedisErrorIsSummarisedNotQuoted() throws {
        let service = try ServiceUnderTest()
        try service.redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
        try service.redis.cli("CONFIG", "SET", "maxmemory", "1")
        let answer = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember",
                                            body: Data(#"{"campaign":"\#(Self.campaign)","member":"OOM-1"}"#.utf8),
                                            headers: ["content-type: application/json"])
        #expect(answer.status == 503)
        #expect(answer.code == "unavailable")
        let message = answer.json["message"] as? String ?? ""
        #expect(message.contains("Redis: out of memory"), "\(message)")
        for leak in ["OOM", "maxmemory", "script", "redis.call", "KEYS", "user_script"] {
            #expect(!message.contains(leak), "\(message) contains \(leak)")
        }
    }

    /// Random names Voucherify does not know: each leaves its short negative answer and nothing
    /// else (no lease, no generation token), and Redis is back to where it was once those expire.
    @Test func unknownNamesLeaveOnlyTheirNegativeAnswer() throws {
        let service = try ServiceUnderTest(environment: ["CACHE_NOT_FOUND_SECONDS": "6"])
        let names = (0..<40).map { _ in "NOBODY-\(UUID().uuidString)" }
        let batch = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/BatchGetMemberExpirations",
                                           body: try JSONSerialization.data(withJSONObject: ["campaign": Self.campaign, "members": names]),
                                           headers: ["content-type: application/json"])
        #expect(batch.status == 200, "\(batch.text)")
        func memberKeys() throws -> [String] {
            try service.redis.cli("--scan", "--pattern", "pe:{*").split(whereSeparator: \.isNewline).map(String.init)
        }
        // The stores go out just before the answers: wait until every read has finished in Redis.
        try waitUntil("every read released its lease") { try !memberKeys().contains { $0.contains("}:lease:") } }
        let keys = try memberKeys()
        #expect(Set(keys) == Set(names.map(answersKey)), "\(keys.filter { !$0.hasSuffix("}:answers") })")
        for key in keys {
            let ttl = Int(try service.redis.cli("PTTL", key)) ?? -1
            #expect(ttl <= 6000, "\(key) lives \(ttl) ms")
        }
        try waitUntil("the negative answers expired", timeout: 30) { try memberKeys().isEmpty }
        #expect(try service.redis.cli("DBSIZE") == (try service.redis.cli("EXISTS", "pe:rate-budget")))
    }

    /// Many failed calls of one class give one log line per minute; each class has its own line;
    /// a 429 says how long calls pause; a refusal's line carries Voucherify's text, truncated.
    @Test func upstreamFailuresAreLoggedOncePerClassPerMinute() throws {
        let permit = StackPermit()
        let fake = try FakeVoucherify()
        defer {
            fake.stop()
            _ = permit
        }
        let lines = CapturedLog()
        let http = try LoopCurl()
        let loop = http.loop
        // A circuit that never opens: every read below reaches the fake.
        let shared = VoucherifyShared(circuitBreaker: CircuitBreaker(policy: CircuitBreaker.Policy(failureThreshold: 1_000_000)))
        var configuration = try VoucherifyConfiguration(baseURL: fake.baseURL, appID: FakeVoucherify.appID, appToken: FakeVoucherify.appToken)
        configuration.retry = RetryPolicy(maxAttempts: 1)
        let logger = lines.logger(label: "hygiene")
        let curl = http.curl
        let api = try loop.runAndWait { LoopBound(VoucherifyAPI(curl: curl.value, configuration: configuration, shared: shared, logger: logger), loop: loop) }
        func read(_ member: String) throws -> Result<[PointsBucket], VoucherifyError> {
            let done = DispatchSemaphore(value: 0)
            let outcome = Mutex<Result<[PointsBucket], VoucherifyError>?>(nil)
            try loop.runAndWait {
                api.value.fetchMemberBuckets(campaign: FakeVoucherify.campaignID, member: member, deadline: loop.monotonicMilliseconds + 10_000,
                                             admission: RecordingAdmission()) { result in
                    outcome.withLock { $0 = result }
                    done.signal()
                }
            }
            guard done.wait(timeout: .now() + 60) == .success, let result = outcome.withLock({ $0 }) else { throw TestFailure("no answer") }
            return result
        }

        try fake.fail(["mode": "status", "status": 503])
        for index in 0..<5 { #expect(try read("M-\(index)") == .failure(.unavailable("HTTP 503"))) }
        try fake.fail(["mode": "rate_limit", "retry_after": 60])
        for index in 0..<3 { #expect(try read("R-\(index)") == .failure(.rateLimited(retryAfterSeconds: 60))) }
        let longText = String(repeating: "y", count: 1000)
        try fake.fail(["mode": "status", "status": 400, "content_type": "application/json", "body": #"{"message":"UPSTREAM \#(longText)"}"#])
        for index in 0..<3 { #expect(try read("B-\(index)") == .failure(.rejectedRequest(status: 400, detail: "the request was malformed"))) }

        let logged = lines.entries.filter { $0.metadata["class"] != nil }
        #expect(logged.map { $0.metadata["class"]?.description } == ["5xx", "429", "other_4xx"])
        #expect(logged.allSatisfy { $0.level >= .info && $0.metadata["suppressed_since_last"]?.description == "0" })
        #expect(logged[1].metadata["retry_after_s"]?.description == "60")
        #expect(logged[1].level >= .warning)
        let message = logged[2].metadata["voucherify_message"]?.description ?? ""
        #expect(message.hasPrefix("UPSTREAM yyy") && message.count <= VoucherifyFailure.maxLoggedMessageCharacters + 1)
        // The next minute's line tells how many were held back (here on a fresh limiter's clock).
        #expect(shared.failureLog.admit(.serverError, now: loop.monotonicMilliseconds + 60_000) == 4)
    }
}
