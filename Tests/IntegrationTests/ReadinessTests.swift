import Foundation
import Testing

/// `/readyz` tells the truth about Redis: answering in time, not merely accepting connections.
@Suite(.serialized) struct ReadinessTests {
    /// Redis accepts the TCP connection and refuses our password: not ready, and answers still
    /// come from Voucherify as with Redis down.
    @Test func aRedisThatRefusesOurPasswordIsNotReady() throws {
        let service = try ServiceUnderTest(redisPassword: "right-password",
                                           redisURL: { "redis://:wrong-password@127.0.0.1:\($0.port)" }, waitUntilReady: false)
        try service.fake.putMember("CARD-R", buckets: buckets(1))
        // Redis logs every refused AUTH: wait until both workers' handshakes were refused.
        try waitUntil("both workers' AUTH was refused") {
            (try service.redis.cli("ACL", "LOG").components(separatedBy: "auth").count - 1) >= 2
        }
        let ready = try CurlClient.request("GET", service.baseURL + "/readyz")
        #expect(ready.status == 503)
        #expect(ready.text.hasPrefix("not ready"))
        #expect(!service.app.allWorkersReady())
        let answer = try service.get(member: "CARD-R")
        #expect(answer.status == 200)
        #expect(answer.headers["x-cache"] == "miss")
    }

    /// Redis that stops answering: /readyz waits at most the command timeout and says 503, then
    /// turns 200 again once Redis answers.
    @Test func aRedisThatDoesNotAnswerIsNotReadyUntilItDoes() throws {
        let service = try ServiceUnderTest()
        try service.redis.cli("CLIENT", "PAUSE", "3000", "ALL")
        let ready = try CurlClient.request("GET", service.baseURL + "/readyz")
        #expect(ready.status == 503)
        #expect(ready.text.contains("500 ms"))
        try service.waitUntilReady()
    }
}
