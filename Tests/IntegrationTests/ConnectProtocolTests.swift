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

    /// gRPC-Web (binary) over HTTP/1.1 and gRPC over HTTP/2, end to end with curl: the member's
    /// answer framed, the status where each protocol reads it; gRPC over HTTP/1.1 is the 505.
    @Test func grpcWebOverHTTP1AndGRPCOverHTTP2() throws {
        let service = try ServiceUnderTest()
        try service.fake.putMember("WEB-1", buckets: buckets(1, points: 70))
        let frame = grpcGetMemberExpirationFrame(campaign: FakeVoucherify.campaignID, member: "WEB-1")
        let url = service.baseURL + "/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"

        let web = try CurlClient.request("POST", url, body: frame, headers: ["content-type: application/grpc-web+proto"], http2: false)
        #expect(web.httpVersion == "1.1")
        #expect(web.status == 200)
        #expect(web.headers["content-type"] == "application/grpc-web+proto")
        let body = [UInt8](web.body)
        try #require(body.count > 5 && body[0] == 0)
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        try #require(body.count > 5 + length + 5)
        // active_points (field 5) = 70 is in the message: tag 0x28, varint 70.
        let payload = Array(body[5..<(5 + length)])
        #expect(payload.indices.dropLast().contains { payload[$0] == 0x28 && payload[$0 + 1] == 70 })
        let trailer = Array(body[(5 + length)...])
        #expect(trailer.first == 0x80)
        #expect(String(decoding: trailer.dropFirst(5), as: UTF8.self) == "grpc-status: 0\r\n")

        let grpc = try CurlClient.request("POST", url, body: frame, headers: ["content-type: application/grpc", "te: trailers"])
        #expect(grpc.httpVersion == "2")
        #expect(grpc.headers["grpc-status"] == "0")
        #expect(grpc.headers["x-cache"] == "hit")
        #expect([UInt8](grpc.body) == Array(body[..<(5 + length)]))

        let refused = try CurlClient.request("POST", url, body: frame, headers: ["content-type: application/grpc"], http2: false)
        #expect(refused.status == 505)
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
