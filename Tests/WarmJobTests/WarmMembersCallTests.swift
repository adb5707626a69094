import Codecs
import HTTPClient
import Testing
@testable import WarmJob

@Suite struct WarmMembersCallTests {
    private func outcome(_ status: Int, _ body: String, retryAfter: String? = nil) -> WarmCallOutcome {
        WarmMembersCall.outcome(status: status, retryAfter: retryAfter, body: Array(body.utf8))
    }

    @Test func requestBodyIsConnectJSON() throws {
        let body = WarmMembersCall.body(campaign: "Fake \"Loyalty\"", members: ["A", "B\\C"], force: true)
        #expect(String(decoding: body, as: UTF8.self) == #"{"campaign":"Fake \"Loyalty\"","members":["A","B\\C"],"force":true}"#)
        let parsed = try #require(try JSONParser.parse(body).objectValue)
        #expect(parsed["members"] == .array([.string("A"), .string("B\\C")]))
        #expect(String(decoding: WarmMembersCall.body(campaign: "c", members: ["A"], force: false), as: UTF8.self)
            == #"{"campaign":"c","members":["A"],"force":false}"#)
    }

    /// Within Kubernetes' default 30 s between SIGTERM and SIGKILL, with room for the answer.
    @Test func eachCallAsksForTheRestOfTheJobUpToTwentySeconds() {
        #expect(WarmMembersCall.connectTimeoutMilliseconds(jobTimeLeft: 3_600_000) == 20_000)
        #expect(WarmMembersCall.connectTimeoutMilliseconds(jobTimeLeft: 20_001) == 20_000)
        #expect(WarmMembersCall.connectTimeoutMilliseconds(jobTimeLeft: 12_345) == 12_345)
        #expect(WarmMembersCall.connectTimeoutMilliseconds(jobTimeLeft: 0) == 1)
        #expect(WarmMembersCall.connectTimeoutMilliseconds(jobTimeLeft: -50) == 1)
    }

    @Test func anAnswerInLowerCamelCase() {
        let body = #"{"requested":3,"warmed":1,"alreadyFresh":1,"failed":[{"member":"X","code":"not_found","message":"gone"}],"deferred":["B"]}"#
        #expect(outcome(200, body) == .answered(WarmAnswer(
            warmed: 1, alreadyFresh: 1, failed: [MemberFailure(member: "X", code: "not_found", message: "gone")], deferred: ["B"])))
    }

    @Test func anAnswerInSnakeCaseWithNumbersAsStringsAndFieldsLeftOut() {
        #expect(outcome(200, #"{"warmed":"2","already_fresh":"5"}"#) == .answered(WarmAnswer(warmed: 2, alreadyFresh: 5)))
    }

    @Test func countsOutOfRangeAreClamped() {
        #expect(outcome(200, #"{"warmed":-4,"alreadyFresh":"99999999999"}"#) == .answered(WarmAnswer(warmed: 0, alreadyFresh: Int(Int32.max))))
        #expect(outcome(200, #"{"warmed":1e3,"alreadyFresh":"x"}"#) == .answered(WarmAnswer(warmed: 0, alreadyFresh: 0)))
    }

    @Test func anUnreadableAnswerIsRetried() {
        #expect(outcome(200, "<html>") == .retryable(code: "internal", message: "the service's answer is not a JSON object", retryAfterSeconds: nil))
    }

    @Test func connectErrorsThatPassAreRetriedWithTheirRetryAfter() {
        #expect(outcome(429, #"{"code":"resource_exhausted","message":"budget"}"#, retryAfter: " 12 ")
            == .retryable(code: "resource_exhausted", message: "budget", retryAfterSeconds: 12))
        #expect(outcome(503, #"{"code":"unavailable","message":"down"}"#, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT")
            == .retryable(code: "unavailable", message: "down", retryAfterSeconds: nil))
        #expect(outcome(504, #"{"code":"deadline_exceeded","message":"late"}"#) == .retryable(code: "deadline_exceeded", message: "late", retryAfterSeconds: nil))
        #expect(outcome(500, #"{"code":"internal","message":"oops"}"#) == .retryable(code: "internal", message: "oops", retryAfterSeconds: nil))
    }

    @Test func invalidArgumentAndOtherLastingErrorsRejectTheCall() {
        #expect(outcome(400, #"{"code":"invalid_argument","message":"campaign is required"}"#)
            == .rejected(code: "invalid_argument", message: "campaign is required"))
        #expect(outcome(403, #"{"code":"permission_denied","message":"no"}"#) == .rejected(code: "permission_denied", message: "no"))
    }

    @Test func unimplementedMeansTheServiceHasNoWarmMembers() {
        #expect(outcome(404, #"{"code":"unimplemented","message":"no such method"}"#) == .unsupported(message: "no such method"))
        #expect(outcome(404, "Not Found") == .unsupported(message: "HTTP 404"))
    }

    @Test func statusesWithoutAConnectErrorMapAsConnectSays() {
        #expect(outcome(502, "Bad Gateway") == .retryable(code: "unavailable", message: "HTTP 502", retryAfterSeconds: nil))
        #expect(outcome(401, "") == .rejected(code: "unauthenticated", message: "HTTP 401"))
    }

    @Test func transportErrors() {
        #expect(WarmMembersCall.outcome(.failure(.connectionFailed("Couldn't connect to server"))) == .notConnected(message: "Couldn't connect to server"))
        #expect(WarmMembersCall.outcome(.failure(.connectionFailed("connect timed out after 5000 ms"))) == .notConnected(message: "connect timed out after 5000 ms"))
        #expect(WarmMembersCall.outcome(.failure(.transport("Error in the HTTP2 framing layer"))) == .broken(message: "Error in the HTTP2 framing layer"))
        #expect(WarmMembersCall.outcome(.failure(.timedOut(milliseconds: 25_000)))
            == .retryable(code: "unavailable", message: "no answer within 25000 ms", retryAfterSeconds: nil))
    }
}
