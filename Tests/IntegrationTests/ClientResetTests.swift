import Foundation
import Testing

@Suite(.serialized) struct ClientResetTests {
    /// A stream reset while its upstream call is in flight: the late result is dropped without
    /// harm and the fill still lands in the cache. Follow-ups use fresh connections: libcurl 7.88
    /// fails later streams on a connection where it abandoned one (the server keeps serving that
    /// connection; checked by hand with Python's h2).
    @Test func resetWhileUpstreamIsInFlightDropsTheLateResult() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("RESET", buckets: buckets(2, points: 3))
        // Long enough that the reset surely comes first (it follows the fake's receipt of the call).
        try service.fake.fail(["mode": "slow", "latency_ms": 3000, "count": 1])
        let client = try H2Client()
        let url = service.baseURL + ServiceUnderTest.rpc
        let body = #"{"campaign":"\#(FakeVoucherify.campaignID)","member":"RESET"}"#

        // Reset once the service's upstream call has reached the fake.
        #expect(try client.sendAndReset("POST", url, json: body, once: { try service.fake.totalCalls() == 1 }))
        // While the abandoned call is still waiting upstream, the service keeps answering.
        #expect(try H2Client().send("GET", service.baseURL + "/healthz").status == 200)
        // The late result still fills the cache.
        try service.waitUntilCached(member: "RESET")

        let after = try H2Client().send("POST", url, json: body)
        #expect(after.status == 200)
        #expect(after.httpVersion == 2)
        #expect(after.header("x-cache") == "hit")
        #expect(try service.fake.totalCalls() == 1)
    }

    @Test func manyResetsInARowLeaveTheServerHealthy() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("RESET-2", buckets: buckets(1))
        try service.fake.fail(["mode": "slow", "latency_ms": 300])
        let url = service.baseURL + ServiceUnderTest.rpc
        for index in 0..<20 {
            _ = try H2Client().sendAndReset("POST", url, json: #"{"campaign":"c","member":"R\#(index)"}"#, afterMilliseconds: 5)
        }
        try service.fake.fail(["mode": "none"])
        #expect(try H2Client().send("GET", service.baseURL + "/healthz").status == 200)
        #expect(try service.get(member: "RESET-2").status == 200)
    }
}
