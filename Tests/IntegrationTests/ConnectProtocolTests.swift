import Foundation
import Testing

/// Connect unary JSON as the contract defines it: errors, limits, GET, compression, deadlines.
@Suite(.serialized) struct ConnectProtocolTests {
    @Test func badRequestsGetTheRightConnectErrors() throws {
        let service = try ServiceUnderTest()
        let url = service.baseURL + ServiceUnderTest.rpc

        let badJSON = try service.get(#"{"campaign": "c", "member": "#)
        #expect(badJSON.status == 400)
        #expect(badJSON.code == "invalid_argument")

        let missingMember = try service.get(#"{"campaign":"c"}"#)
        #expect(missingMember.code == "invalid_argument")
        #expect((missingMember.json["message"] as? String)?.contains("member") == true)

        #expect(try service.get(#"{"campaign":"c","member":"m","expiring_before":"2026-02-30"}"#).code == "invalid_argument")

        let oversized = try CurlClient.request("POST", url, body: Data(repeating: 0x20, count: 70_000), headers: ["content-type: application/json"])
        #expect(oversized.status == 429)
        #expect(oversized.code == "resource_exhausted")

        let wrongMethod = try CurlClient.request("DELETE", url)
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"] == "GET, POST")

        let wrongType = try CurlClient.request("POST", url, body: Data("{}".utf8), headers: ["content-type: text/xml"])
        #expect(wrongType.status == 415)

        let unknown = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/Nope",
                                             body: Data("{}".utf8), headers: ["content-type: application/json"])
        #expect(unknown.status == 404)
        #expect(unknown.code == "unimplemented")

        #expect(try service.get(#"{"campaign":"c","member":"m"}"#, headers: ["connect-protocol-version: 2"]).code == "invalid_argument")
        #expect(try service.get(#"{"campaign":"c","member":"m"}"#, headers: ["content-encoding: br"]).code == "unimplemented")
    }

    @Test func http1PeersAreServedOnTheSamePort() throws {
        let service = try ServiceUnderTest()
        // A relay speaking HTTP/1.1 reaches the webhook itself: this service has no WEBHOOK_SECRET,
        // so the webhook's own refusal comes back, over HTTP/1.1.
        let answer = try CurlClient.request("POST", service.baseURL + "/webhooks/voucherify", body: Data("{}".utf8), http2: false)
        #expect(answer.httpVersion == "1.1")
        #expect(answer.status == 503)
        #expect(answer.code == "unavailable")
        #expect(try CurlClient.request("GET", service.baseURL + "/healthz", http2: false).status == 200)
        // The port still serves HTTP/2 afterwards.
        let http2 = try CurlClient.request("GET", service.baseURL + "/healthz")
        #expect(http2.status == 200)
        #expect(http2.httpVersion == "2")
    }

    @Test func oversizedHeadersAreRejectedNotProcessed() throws {
        let service = try ServiceUnderTest()
        let result = try service.get(#"{"campaign":"c","member":"m"}"#, headers: ["x-padding: " + String(repeating: "a", count: 20_000)])
        #expect(result.status == 429)
        #expect(result.code == "resource_exhausted")
        #expect(try service.fake.totalCalls() == 0)
    }

    @Test func gzipRequestsGetRequestsAndGzipResponses() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("CARD-Z", buckets: buckets(40))
        let json = Data(#"{"campaign":"\#(FakeVoucherify.campaignID)","member":"CARD-Z"}"#.utf8)
        let gzipped = Data(try runWithInput("/bin/gzip", ["-c"], json))

        let post = try CurlClient.request("POST", service.baseURL + ServiceUnderTest.rpc, body: gzipped,
                                          headers: ["content-type: application/json", "content-encoding: gzip"])
        #expect(post.status == 200)
        #expect(post.json["member"] as? String == "CARD-Z")
        try service.waitUntilCached(member: "CARD-Z")

        let base64 = gzipped.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        let get = try CurlClient.request("GET", service.baseURL + ServiceUnderTest.rpc + "?encoding=json&base64=1&compression=gzip&connect=v1&message=" + base64)
        #expect(get.status == 200)
        #expect(get.headers["x-cache"] == "hit")

        let escaped = String(decoding: json, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        let percent = try CurlClient.request("GET", service.baseURL + ServiceUnderTest.rpc + "?message=\(escaped)&encoding=json",
                                             headers: ["accept-encoding: gzip"])
        #expect(percent.status == 200)
        #expect(percent.headers["content-encoding"] == "gzip")
        let inflated = try runWithInput("/bin/gzip", ["-dc"], percent.body)
        #expect(String(decoding: inflated, as: UTF8.self).contains(#""member":"CARD-Z""#))
    }

    @Test func callerDeadlineEndsTheCallWithDeadlineExceeded() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("SLOW", buckets: buckets(1))
        // Voucherify would answer (200) only after 30 s, and curl gives up after 15 s: a 504 can
        // only come from the caller's 200 ms deadline, so no clock is needed to tell.
        try service.fake.fail(["mode": "slow", "latency_ms": 30_000, "count": 1])
        let result = try service.get(#"{"campaign":"\#(FakeVoucherify.campaignID)","member":"SLOW"}"#, headers: ["connect-timeout-ms: 200"])
        #expect(result.status == 504)
        #expect(result.code == "deadline_exceeded")
        #expect(try service.get(#"{"campaign":"c","member":"m"}"#, headers: ["connect-timeout-ms: 12345678901"]).code == "invalid_argument")
    }

    @Test func requestEndingInTrailersIsAnswered() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("CARD-T", buckets: buckets(1))
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("pe-trailer-\(UUID().uuidString).json")
        try Data(#"{"campaign":"\#(FakeVoucherify.campaignID)","member":"CARD-T"}"#.utf8).write(to: body)
        defer { try? FileManager.default.removeItem(at: body) }
        // nghttp sends the body, then a HEADERS frame with END_STREAM (trailers).
        let output = try run("/usr/bin/nghttp", ["-d", body.path, "--trailer=x-checksum: 1", "-H", "content-type: application/json",
                                                 "-t", "10", service.baseURL + ServiceUnderTest.rpc])
        #expect(output.contains(#""member":"CARD-T""#))
    }

    @Test func advertisesStreamAndHeaderLimitsInSettings() throws {
        let service = try ServiceUnderTest()
        let trace = try run("/usr/bin/nghttp", ["-v", "-t", "10", service.baseURL + "/healthz"])
        #expect(trace.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):256]"))
        #expect(trace.contains("[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384]"))
    }

    @Test func healthEndpoints() throws {
        let service = try ServiceUnderTest()
        #expect(try CurlClient.request("GET", service.baseURL + "/healthz").status == 200)
        #expect(try CurlClient.request("GET", service.baseURL + "/readyz").status == 200)
        let check = try CurlClient.request("POST", service.baseURL + "/grpc.health.v1.Health/Check", body: Data(#"{"service":""}"#.utf8),
                                           headers: ["content-type: application/json"])
        #expect(check.json["status"] as? String == "SERVING")
        let metrics = try CurlClient.request("GET", service.baseURL + "/metrics")
        // Every family has HELP and TYPE; the shield's families are there before any traffic.
        for family in ["points_expiry_cache_results_total", "points_expiry_single_flight_joins_total", "points_expiry_upstream_calls_total",
                       "points_expiry_upstream_circuit_state", "points_expiry_rate_budget_grants_total"] {
            #expect(metrics.text.contains("# HELP \(family) "))
            #expect(metrics.text.contains("# TYPE \(family) "))
        }
        #expect(metrics.text.contains(#"points_expiry_upstream_circuit_state{state="closed"} 1"#))
    }
}
