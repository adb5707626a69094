import Foundation
import Testing
import TestSupport

/// What an operator reads off the running service: `/metrics` as prometheus_client parses it,
/// one access line per request with the `x-request-id` the caller sees, one line per webhook
/// delivery.
@Suite struct ObservabilityTests {
    private static let python = PackageFiles.url(".build-py/venv/bin/python3").path

    /// The access line of the request `id`, once the service wrote it (after the answer left).
    private func accessLine(_ log: CapturedLog, id: String) throws -> CapturedLog.Entry {
        var found: CapturedLog.Entry?
        try waitUntil("the access line of request \(id)") {
            found = log.entries("request").first { $0["request_id"] == id }
            return found != nil
        }
        return try #require(found)
    }

    @Test func metricsParseWithPrometheusClientAndHoldTheContractsFamilies() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw TestFailure("\(Self.python) is missing: run scripts/test.sh, which creates the Python clients' venv")
        }
        let service = try ServiceUnderTest()
        try service.fake.putMember("OBS-METRICS-1", buckets: buckets(1))
        #expect(try service.get(member: "OBS-METRICS-1").headers["x-cache"] == "miss")
        try service.waitUntilCached(member: "OBS-METRICS-1")
        for _ in 0..<3 { #expect(try service.get(member: "OBS-METRICS-1").headers["x-cache"] == "hit") }
        let unsupported = try CurlClient.request("POST", service.baseURL + ServiceUnderTest.rpc, body: Data("{}".utf8),
                                                 headers: ["content-type: text/plain"])
        #expect(unsupported.status == 415)
        let run = try ClientRun(Self.python, [PackageFiles.url("Tests/clients/metrics_checks.py").path, "--address", "127.0.0.1:\(service.app.port)",
                                              "--requests", "4"], environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        #expect(run.status == 0, "metrics_checks.py failed (exit \(run.status)):\n\(run.output)")
    }

    @Test func eachRequestGetsOneAccessLineWithTheRequestIDItsCallerSees() throws {
        let log = CapturedLog()
        let service = try ServiceUnderTest(log: log)
        try service.fake.putMember("OBS-LOG-1", buckets: buckets(1))
        let miss = try service.get(#"{"campaign":"\#(FakeVoucherify.campaignID)","member":"OBS-LOG-1"}"#, headers: ["x-request-id: obs-miss-1"])
        #expect(miss.status == 200 && miss.headers["x-request-id"] == "obs-miss-1")
        let missLine = try accessLine(log, id: "obs-miss-1")
        #expect(missLine["method"] == "GetMemberExpiration")
        #expect(missLine["protocol"] == "connect" && missLine["http_version"] == "2")
        #expect(missLine["status"] == "200" && missLine["code"] == "ok")
        #expect(missLine["cache"] == "miss" && missLine["upstream_reads"] == "1")
        #expect(missLine["peer"]?.hasPrefix("127.0.0.1:") == true)
        #expect(missLine["duration_ms"].flatMap(Double.init) != nil)

        try service.waitUntilCached(member: "OBS-LOG-1")
        let hit = try service.get(member: "OBS-LOG-1")
        let generated = try #require(hit.headers["x-request-id"])
        #expect(generated.count == 32)
        let hitLine = try accessLine(log, id: generated)
        #expect(hitLine["cache"] == "hit" && hitLine["upstream_reads"] == "0")

        // gRPC: the id travels in the initial metadata; HTTP/1.1 plain endpoints echo it too.
        let grpc = try CurlClient.request("POST", service.baseURL + ServiceUnderTest.rpc,
                                          body: grpcGetMemberExpirationFrame(campaign: FakeVoucherify.campaignID, member: "OBS-LOG-1"),
                                          headers: ["content-type: application/grpc", "te: trailers", "x-request-id: obs-grpc-1"])
        #expect(grpc.headers["x-request-id"] == "obs-grpc-1" && grpc.headers["grpc-status"] == "0")
        let grpcLine = try accessLine(log, id: "obs-grpc-1")
        #expect(grpcLine["protocol"] == "grpc" && grpcLine["code"] == "ok" && grpcLine["cache"] == "hit")
        let health = try CurlClient.request("GET", service.baseURL + "/healthz", headers: ["x-request-id: obs-probe-1"], http2: false)
        #expect(health.headers["x-request-id"] == "obs-probe-1")
        let healthLine = try accessLine(log, id: "obs-probe-1")
        #expect(healthLine["method"] == "/healthz" && healthLine["protocol"] == "http" && healthLine["http_version"] == "1.1")

        // One line per request, each at info.
        let ids = ["obs-miss-1", generated, "obs-grpc-1", "obs-probe-1"]
        #expect(log.entries("request").filter { ids.contains($0["request_id"] ?? "") }.count == 4)
        #expect(log.entries("request").allSatisfy { $0.level == .info })
    }

    @Test func eachWebhookDeliveryGetsOneLineWithoutItsSignature() throws {
        let log = CapturedLog()
        let service = try ServiceUnderTest(environment: ["WEBHOOK_SECRET": ServiceUnderTest.webhookSecret], log: log)
        let delivered = try service.deliver(pointsExpiredEnvelope(member: "OBS-HOOK-1", eventID: "evt_obs_1"))
        #expect(delivered.status == 200)
        let refused = try service.deliver(pointsExpiredEnvelope(member: "OBS-HOOK-2"), signature: "not-the-signature")
        #expect(refused.status == 401)
        var lines: [CapturedLog.Entry] = []
        try waitUntil("two webhook lines") {
            lines = log.entries("webhook event")
            return lines.count == 2
        }
        #expect(lines[0]["result"] == "invalidated" && lines[0]["member"] == "OBS-HOOK-1" && lines[0]["event_id"] == "evt_obs_1")
        #expect(lines[0]["type"] == "voucher.loyalty_card.points_expired")
        #expect(lines[1]["result"] == "unauthenticated" && lines[1]["member"] == nil)
        let everything = log.entries.flatMap { $0.metadata.values.map { "\($0)" } + [$0.message] }
        #expect(!everything.contains { $0.contains("not-the-signature") || $0.contains(ServiceUnderTest.webhookSecret) })
    }
}
