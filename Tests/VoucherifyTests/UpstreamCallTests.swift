import ExpiryDomain
import HTTPClient
import Testing
@testable import Voucherify

@Suite struct RateLimitObservationTests {
    let now = Timestamp(millisecondsSince1970: 1_700_000_000_000)

    func observe(_ status: Int, _ headers: [(String, String)]) -> RateLimitObservation {
        RateLimitObservation(status: status, headers: headers.map { (name: $0.0, value: $0.1) }, now: now)
    }

    @Test func readsVoucherifysHeaders() {
        let observation = observe(200, [("x-rate-limit-limit", "2000"), ("x-rate-limit-remaining", "1999"),
                                        ("x-rate-limit-retry", "1700000060"), ("x-rate-limit-type", "requests_per_minute")])
        #expect(observation == RateLimitObservation(limit: 2000, remaining: 1999, blockedForSeconds: nil))
    }

    @Test func namesAreCaseInsensitiveAndSpacesAroundValuesIgnored() {
        #expect(observe(200, [("X-Rate-Limit-Limit", " 100 "), ("X-RATE-LIMIT-REMAINING", "7")])
            == RateLimitObservation(limit: 100, remaining: 7))
    }

    @Test func absentHeadersStayUnknown() {
        #expect(observe(200, []) == RateLimitObservation())
        #expect(observe(503, [("content-type", "text/plain")]) == RateLimitObservation())
    }

    @Test(arguments: ["-5", "12abc", "", "1e3", "0x10", "+3", "1.5", "١٢"])
    func unreadableValuesAreAbsent(_ value: String) {
        #expect(observe(200, [("x-rate-limit-limit", value), ("x-rate-limit-remaining", value)]) == RateLimitObservation())
    }

    @Test func hugeValuesAreClamped() {
        let huge = "99999999999999999999999999999"
        #expect(observe(200, [("x-rate-limit-limit", huge), ("x-rate-limit-remaining", huge)])
            == RateLimitObservation(limit: RateLimitObservation.maxHeaderCount, remaining: RateLimitObservation.maxHeaderCount))
        #expect(observe(200, [("x-rate-limit-remaining", huge)]) == RateLimitObservation(remaining: RateLimitObservation.maxHeaderCount))
    }

    @Test func remainingNeverExceedsTheLimit() {
        #expect(observe(200, [("x-rate-limit-limit", "100"), ("x-rate-limit-remaining", "5000")])
            == RateLimitObservation(limit: 100, remaining: 100))
    }

    @Test func theFirstReadableValueWins() {
        #expect(observe(200, [("x-rate-limit-limit", "junk"), ("x-rate-limit-limit", "60"), ("x-rate-limit-limit", "70")]).limit == 60)
    }

    @Test func a429SaysHowLongToStop() {
        #expect(observe(429, [("retry-after", "7")]).blockedForSeconds == 7)
        #expect(observe(429, [("x-rate-limit-retry", "1700000042")]).blockedForSeconds == 42)
        // Unreadable or absent: 1 s; "now" or in the past: still 1 s (a 429 always pauses).
        #expect(observe(429, []).blockedForSeconds == 1)
        #expect(observe(429, [("retry-after", "soon")]).blockedForSeconds == 1)
        #expect(observe(429, [("retry-after", "0")]).blockedForSeconds == 1)
        #expect(observe(429, [("x-rate-limit-retry", "1")]).blockedForSeconds == 1)
        // A peer cannot stop the service for days.
        #expect(observe(429, [("retry-after", "999999999999999999999")]).blockedForSeconds == RateLimitHeaders.maxRetryAfterSeconds)
        #expect(observe(429, [("x-rate-limit-retry", "9223372036854775807")]).blockedForSeconds == RateLimitHeaders.maxRetryAfterSeconds)
        // Only a 429 blocks.
        #expect(observe(200, [("retry-after", "7")]).blockedForSeconds == nil)
        #expect(observe(503, [("retry-after", "7")]).blockedForSeconds == nil)
    }
}

@Suite struct UpstreamCallKindTests {
    @Test(arguments: [
        (200, UpstreamCallKind.ok), (404, .notFound), (401, .rejectedCredentials), (403, .rejectedCredentials),
        (429, .rateLimited), (500, .serverError), (503, .serverError), (599, .serverError), (400, .rejectedRequest),
        (422, .rejectedRequest), (204, .rejectedRequest), (302, .rejectedRequest), (600, .rejectedRequest), (0, .rejectedRequest),
    ])
    func statuses(_ status: Int, _ kind: UpstreamCallKind) {
        #expect(UpstreamCallKind(status: status) == kind)
    }

    @Test(arguments: [
        (HTTPClientError.timedOut(milliseconds: 5), UpstreamCallKind.timedOut), (.queueTimedOut(waitedMilliseconds: 5), .notSent),
        (.connectionFailed("refused"), .network), (.transport("reset"), .network), (.responseTooLarge(limit: 1), .malformed),
        (.setup("bad option"), .setupFailed),
    ])
    func transportErrors(_ error: HTTPClientError, _ kind: UpstreamCallKind) {
        #expect(UpstreamCallKind(error) == kind)
    }

    /// Only what may pass is retried, and only that counts against the circuit.
    @Test func retriesAndCircuitHealth() {
        let all: [UpstreamCallKind] = [.ok, .notFound, .rateLimited, .serverError, .timedOut, .notSent, .network, .malformed,
                                       .rejectedCredentials, .rejectedRequest, .setupFailed]
        #expect(all.filter(\.isRetryable) == [.serverError, .timedOut, .network])
        #expect(all.filter { $0.health == .failed } == [.serverError, .timedOut, .network])
        #expect(all.filter { $0.health == .inconclusive } == [.notSent, .setupFailed])
        #expect(all.filter { $0.failureClass == nil } == [.ok, .notFound])
    }

    @Test func outcomesAndTheirLabels() {
        let pairs: [(UpstreamCallKind, String)] = [
            (.ok, "ok"), (.notFound, "not_found"), (.rateLimited, "429"), (.serverError, "5xx"), (.timedOut, "timeout"),
            (.notSent, "timeout"), (.network, "network"), (.malformed, "other"), (.rejectedCredentials, "other"),
            (.rejectedRequest, "other"), (.setupFailed, "other"),
        ]
        for (kind, label) in pairs { #expect(kind.outcome.rawValue == label) }
        #expect(UpstreamCallOutcome.allCases.map(\.rawValue) == ["ok", "not_found", "429", "5xx", "timeout", "network", "other"])
    }

    @Test func failureClassesForTheLog() {
        #expect(UpstreamCallKind.serverError.failureClass == .serverError)
        #expect(UpstreamCallKind.notSent.failureClass == .timeout)
        #expect(UpstreamCallKind.rateLimited.failureClass == .rateLimited)
        #expect(UpstreamCallKind.rejectedCredentials.failureClass == .credentials)
        #expect(UpstreamCallKind.rejectedRequest.failureClass == .otherClientError)
        #expect(UpstreamCallKind.malformed.failureClass == .malformed)
    }
}
