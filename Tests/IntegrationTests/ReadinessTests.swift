import Foundation
import Testing

/// `/readyz` and the health RPC tell the truth about Redis: answering in time, not merely
/// accepting connections.
@Suite(.serialized) struct ReadinessTests {
    /// Redis accepts the TCP connection and refuses our password: the service is not ready, and
    /// answers still come from Voucherify, as with Redis down.
    @Test func aRedisThatRefusesOurPasswordIsNotReady() throws {
        let service = try ServiceUnderTest(redisPassword: "right-password",
                                           redisURL: { "redis://:wrong-password@127.0.0.1:\($0.port)" }, waitUntilReady: false)
        try service.fake.putMember("CARD-R", buckets: buckets(1))
        // Redis logs refused AUTHs (identical ones as one entry with a `count`): wait until at
        // least two handshakes were refused (both workers, or one worker and its retry).
        try waitUntil("two AUTHs were refused") {
            let lines = try service.redis.cli("ACL", "LOG").split(whereSeparator: \.isNewline).map(String.init)
            let refused = lines.indices.dropLast().filter { lines[$0] == "count" }.compactMap { Int(lines[$0 + 1]) }.reduce(0, +)
            return refused >= 2
        }
        #expect(!service.app.allWorkersReady())
        let ready = try CurlClient.request("GET", service.baseURL + "/readyz")
        #expect(ready.status == 503)
        #expect(ready.text.hasPrefix("not ready"))
        try service.expectHealthNotServing()
        let answer = try service.get(member: "CARD-R")
        #expect(answer.status == 200)
        #expect(answer.headers["x-cache"] == "miss")
    }

    /// Redis that stops answering: /readyz waits at most the command timeout and says 503, then
    /// turns 200 again once Redis answers. (The pause leaves seconds of margin for the probe.)
    @Test func aRedisThatDoesNotAnswerIsNotReadyUntilItDoes() throws {
        let service = try ServiceUnderTest()
        try service.redis.cli("CLIENT", "PAUSE", "5000", "ALL")
        let ready = try CurlClient.request("GET", service.baseURL + "/readyz")
        #expect(ready.status == 503)
        #expect(ready.text.contains("500 ms"))
        try service.waitUntilReady()
    }
}
