import ExpiryDomain
import Testing
import TestSupport
@testable import Voucherify

@Suite struct PointsExpirationPageTests {
    func page(_ json: String) throws(VoucherifyError) -> PointsExpirationPage {
        try PointsExpirationPage(json: Array(json.utf8))
    }

    func malformedReason(_ json: String) -> String? {
        do {
            _ = try page(json)
            return nil
        } catch {
            guard case .malformed(let reason) = error else { return nil }
            return reason
        }
    }

    @Test func parsesTheDocumentedEnvelope() throws {
        let p = try page(#"""
        {"object":"list","data_ref":"data","data":[
          {"id":"lopb_1","voucher_id":"v_1","campaign_id":"camp_1","bucket":{"total_points":120},"status":"ACTIVE",
           "expires_at":"2026-11-22","created_at":"2026-01-01T10:00:00.000Z","updated_at":"2026-02-01T10:00:00Z","object":"loyalty_points_bucket"},
          {"id":"lopb_2","voucher_id":"v_1","campaign_id":"camp_1","bucket":{"total_points":"35"},"status":"ACTIVE",
           "created_at":"2026-01-02T10:00:00.000Z","object":"loyalty_points_bucket","extra":{"nested":[1]}}
        ],"total":7}
        """#)
        #expect(p.total == 7)
        #expect(p.buckets == [
            PointsBucket(id: "lopb_1", voucherId: "v_1", campaignId: "camp_1", points: 120, status: "ACTIVE",
                         expiresAt: try day("2026-11-22"), createdAt: try instant("2026-01-01T10:00:00Z"),
                         updatedAt: try instant("2026-02-01T10:00:00Z")),
            PointsBucket(id: "lopb_2", voucherId: "v_1", campaignId: "camp_1", points: 35, status: "ACTIVE",
                         expiresAt: nil, createdAt: try instant("2026-01-02T10:00:00Z"), updatedAt: nil),
        ])
    }

    @Test func neverExpiringSpellingsAndOptionalFields() throws {
        let p = try page(#"""
        {"data":[
          {"id":"a","bucket":{"total_points":0},"status":"ACTIVE","expires_at":null},
          {"id":"b","bucket":{"total_points":1},"status":"ACTIVE","expires_at":"","voucher_id":null,"updated_at":null}
        ],"total":"2"}
        """#)
        #expect(p.total == 2)
        #expect(p.buckets.map(\.expiresAt) == [nil, nil])
        #expect(p.buckets[0].points == 0)
        #expect(p.buckets[1].voucherId == "")
        #expect(p.buckets[1].createdAt == nil)
    }

    @Test func emptyPage() throws {
        #expect(try page(#"{"object":"list","data":[],"total":0}"#) == PointsExpirationPage(total: 0, buckets: []))
    }

    @Test(arguments: [
        ("not json", "not JSON"),
        ("[]", "not an object"),
        (#"{"total":1}"#, "no data array"),
        (#"{"data":{},"total":1}"#, "no data array"),
        (#"{"data":[]}"#, "total"),
        (#"{"data":[],"total":-1}"#, "total"),
        (#"{"data":[],"total":1.5}"#, "total"),
        (#"{"data":[1],"total":1}"#, "bucket 0: not an object"),
        (#"{"data":[{"bucket":{"total_points":1},"status":"ACTIVE"}],"total":1}"#, "bucket 0: missing id"),
        (#"{"data":[{"id":"a","bucket":{"total_points":1}}],"total":1}"#, "bucket 0: missing status"),
        (#"{"data":[{"id":"a","status":"ACTIVE"}],"total":1}"#, "total_points"),
        (#"{"data":[{"id":"a","status":"ACTIVE","bucket":{"total_points":1.5}}],"total":1}"#, "total_points"),
        (#"{"data":[{"id":"a","status":"ACTIVE","bucket":{"total_points":"x"}}],"total":1}"#, "total_points"),
        (#"{"data":[{"id":"a","status":"ACTIVE","bucket":{"total_points":1},"expires_at":"2026-02-30"}],"total":1}"#, "expires_at"),
        (#"{"data":[{"id":"a","status":"ACTIVE","bucket":{"total_points":1},"expires_at":5}],"total":1}"#, "expires_at"),
        (#"{"data":[{"id":"a","status":"ACTIVE","bucket":{"total_points":1},"created_at":"yesterday"}],"total":1}"#, "created_at"),
    ])
    func malformedAnswersSayWhy(_ json: String, _ reasonFragment: String) throws {
        let reason = try #require(malformedReason(json))
        #expect(reason.contains(reasonFragment))
    }

    @Test func namesTheBucketIndex() {
        let json = #"{"data":[{"id":"a","status":"ACTIVE","bucket":{"total_points":1}},{"id":""}],"total":2}"#
        #expect(malformedReason(json) == "bucket 1: missing id")
    }
}

@Suite struct VoucherifyFailureTests {
    func classify(_ status: Int, _ body: String, retry: Int? = nil) -> VoucherifyError {
        VoucherifyFailure.classify(status: status, body: Array(body.utf8), retryAfterSeconds: retry)
    }

    @Test func missingCampaign() {
        let body = #"{"code":404,"key":"not_found","message":"Resource not found","details":"Cannot find campaign with id Loyalty Campaign","request_id":"v-1","resource_id":"Loyalty Campaign","resource_type":"campaign"}"#
        #expect(classify(404, body) == .campaignNotFound)
    }

    @Test func missingCardOrUnknown404() {
        let voucher = #"{"code":404,"key":"not_found","message":"Resource not found","resource_type":"voucher"}"#
        #expect(classify(404, voucher) == .memberNotFound)
        #expect(classify(404, "<html>404</html>") == .memberNotFound)
        #expect(classify(404, "") == .memberNotFound)
    }

    @Test func badCredentials() {
        let body = #"{"code":401,"key":"unauthorized","message":"Unauthorized","details":"token s3cr3t-t0ken is invalid"}"#
        for status in [401, 403] {
            #expect(classify(status, body) == .rejectedCredentials(status: status))
        }
    }

    @Test func rateLimited() {
        #expect(classify(429, "{}", retry: 12) == .rateLimited(retryAfterSeconds: 12))
        #expect(classify(429, "", retry: nil) == .rateLimited(retryAfterSeconds: nil))
    }

    @Test func serverErrorsMeanUnavailableEvenWithoutJSON() {
        #expect(classify(502, "<html><body>Bad Gateway</body></html>") == .unavailable("HTTP 502"))
        #expect(classify(503, #"{"code":503}"#) == .unavailable("HTTP 503"))
    }

    /// Callers get our words for the status; Voucherify's text (which may echo what we sent) is
    /// only for the log, truncated.
    @Test func otherRefusalsCarryOurOwnWordsNotVoucherifys() {
        let body = #"{"code":400,"key":"invalid_query_params","message":"Invalid query params","details":"limit must be at most 100"}"#
        #expect(classify(400, body) == .rejectedRequest(status: 400, detail: "the request was malformed"))
        #expect(classify(422, "garbage") == .rejectedRequest(status: 422, detail: "the request could not be processed"))
        #expect(classify(418, body) == .rejectedRequest(status: 418, detail: "the request was refused"))
        #expect(classify(302, body) == .rejectedRequest(status: 302, detail: "an unexpected status"))
        #expect(VoucherifyFailure.upstreamMessage(Array(body.utf8)) == "Invalid query params (limit must be at most 100)")
        #expect(VoucherifyFailure.upstreamMessage(Array(#"{"message":"Only message"}"#.utf8)) == "Only message")
        #expect(VoucherifyFailure.upstreamMessage(Array(#"{"details":"Only details"}"#.utf8)) == "Only details")
        #expect(VoucherifyFailure.upstreamMessage(Array("garbage".utf8)) == nil)
        let long = String(repeating: "x", count: 1000)
        let logged = VoucherifyFailure.upstreamMessage(Array(#"{"message":"\#(long)"}"#.utf8)) ?? ""
        #expect(logged.count == VoucherifyFailure.maxLoggedMessageCharacters + 1)
    }
}

@Suite struct UpstreamPathTests {
    @Test(arguments: [
        (".", "%2E"), ("..", "%2E%2E"), ("...", "..."), ("../x", "..%2Fx"), ("%2F", "%252F"), ("a/b", "a%2Fb"),
        ("a b?c#d", "a%20b%3Fc%23d"), ("MEMBER-1_~.x", "MEMBER-1_~.x"), ("ü", "%C3%BC"),
    ])
    func eachCodeIsOneEncodedSegment(_ code: String, _ segment: String) {
        #expect(UpstreamPath.segment(code) == segment)
    }

    @Test func dotSegmentsCannotClimbOutOfTheMembersPath() {
        #expect(UpstreamPath.pointsExpiration(campaign: "..", member: "..")
            == "/v1/loyalties/%2E%2E/members/%2E%2E/points-expiration")
    }
}

@Suite struct RateLimitHeadersTests {
    let now = Timestamp(millisecondsSince1970: 1_795_341_600_000) // 2026-11-22T10:00:00Z

    func retry(_ headers: [(String, String)]) -> Int? {
        RateLimitHeaders.retryAfterSeconds(headers: headers.map { (name: $0.0, value: $0.1) }, now: now)
    }

    @Test func epochRetryHeader() {
        #expect(retry([("X-Rate-Limit-Retry", "1795341630")]) == 30)
        #expect(retry([("x-rate-limit-retry", " 1795341601 ")]) == 1)
        #expect(retry([("X-RATE-LIMIT-RETRY", "1795341500")]) == 0)
    }

    @Test func partialSecondsRoundUp() {
        let later = Timestamp(millisecondsSince1970: 1_795_341_600_200)
        #expect(RateLimitHeaders.retryAfterSeconds(headers: [(name: "X-Rate-Limit-Retry", value: "1795341610")], now: later) == 10)
    }

    @Test func retryAfterSeconds() {
        #expect(retry([("Retry-After", "120")]) == 120)
        #expect(retry([("Retry-After", "300")]) == 300)
        #expect(retry([("Retry-After", "301")]) == RateLimitHeaders.maxRetryAfterSeconds)
        #expect(retry([("Retry-After", "3600")]) == RateLimitHeaders.maxRetryAfterSeconds)
        #expect(retry([("retry-after", "0")]) == 0)
    }

    @Test func theLaterWins() {
        #expect(retry([("Retry-After", "5"), ("X-Rate-Limit-Retry", "1795341630")]) == 30)
        #expect(retry([("X-Rate-Limit-Retry", "1795341630"), ("Retry-After", "60")]) == 60)
    }

    @Test func absentOrUnreadable() {
        #expect(retry([]) == nil)
        #expect(retry([("X-Rate-Limit-Limit", "100"), ("X-Rate-Limit-Remaining", "0")]) == nil)
        #expect(retry([("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]) == nil)
        #expect(retry([("Retry-After", "-5")]) == nil)
        #expect(retry([("Retry-After", "")]) == nil)
        #expect(retry([("Retry-After", "abc"), ("X-Rate-Limit-Retry", "1795341610")]) == 10)
    }

    /// Values in the range that used to trap (an epoch times 1000 past Int64, the saturated
    /// value itself) and beyond it: every one is clamped to the 300 s an upstream may impose.
    @Test(arguments: ["10000000000000000", "9223372036854775", "9223372036854775807", "9223372036854775808",
                      "99999999999999999999999"])
    func hugeValuesAreClampedNotTrapped(_ value: String) {
        #expect(retry([("Retry-After", value)]) == RateLimitHeaders.maxRetryAfterSeconds)
        #expect(retry([("X-Rate-Limit-Retry", value)]) == RateLimitHeaders.maxRetryAfterSeconds)
    }

    @Test func anEpochJustInsideTheClampIsKept() {
        #expect(retry([("X-Rate-Limit-Retry", "1795341900")]) == 300)
        #expect(retry([("X-Rate-Limit-Retry", "1795341899")]) == 299)
    }
}

@Suite struct PageCountTests {
    @Test func pagesForTotals() {
        #expect(PointsExpirationPage.pageCount(total: 0, pageSize: 100, maxPages: 100) == 1)
        #expect(PointsExpirationPage.pageCount(total: 100, pageSize: 100, maxPages: 100) == 1)
        #expect(PointsExpirationPage.pageCount(total: 101, pageSize: 100, maxPages: 100) == 2)
        #expect(PointsExpirationPage.pageCount(total: 20_000, pageSize: 100, maxPages: 100) == 100)
    }

    /// `(total + pageSize - 1) / pageSize` trapped here and took every worker down.
    @Test(arguments: [Int.max, Int.max - 1, Int.max - 98])
    func totalNearIntMaxDoesNotTrap(_ total: Int) {
        #expect(PointsExpirationPage.pageCount(total: total, pageSize: 100, maxPages: 100) == 100)
    }

    @Test func aTotalNearInt64MaxParses() throws {
        let page = try PointsExpirationPage(json: Array(#"{"data":[],"total":9223372036854775807}"#.utf8))
        #expect(page.total == Int.max)
    }
}
