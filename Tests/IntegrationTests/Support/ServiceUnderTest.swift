import Foundation
import Logging
import PointsExpiryServer
import HTTPClient
import TestSupport
import Testing

/// libcurl wants one global init before threads use it.
let curlReady: Void = { try? Curl.globalInit() }()

/// The service built exactly as `points-expiry serve` builds it, in this process, on port 0,
/// with its own redis-server and fake Voucherify.
final class ServiceUnderTest: @unchecked Sendable {
    /// Taken before anything starts; given back after `deinit` stopped everything.
    private let permit = StackPermit()
    let app: PointsExpiryApp
    let redis: RedisServer
    let fake: FakeVoucherify
    static let rpc = "/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration"

    /// `redisURL` is what the service is told (default: the right one); `waitUntilReady: false`
    /// for tests of a service that must not become ready.
    init(environment: [String: String] = [:], fakeArguments: [String] = [], redisPassword: String? = nil,
         redisURL: (RedisServer) -> String = { $0.url }, waitUntilReady: Bool = true, log: CapturedLog? = nil) throws {
        _ = curlReady
        redis = try RedisServer(password: redisPassword)
        fake = try FakeVoucherify(arguments: fakeArguments)
        let settings = [
            "LISTEN": "127.0.0.1:0", "WORKERS": "2", "REDIS_URL": redisURL(redis), "VOUCHERIFY_API_URL": fake.baseURL,
            "VOUCHERIFY_APP_ID": FakeVoucherify.appID, "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken,
        ].merging(environment) { _, override in override }
        let configuration = try ServiceConfiguration.fromEnvironment(settings, cores: 2)
        var logger = Logger(label: "points-expiry-test") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = Logger.Level.critical
        // A test that reads the service's log (`log`) gets everything from `info` up.
        if let log { logger = log.logger(label: "points-expiry-test", level: .info) }
        app = try PointsExpiryApp(configuration: configuration, logger: logger)
        try app.start()
        if waitUntilReady { try self.waitUntilReady() }
    }

    deinit {
        app.shutdown()
        fake.stop()
        redis.stop()
    }

    var baseURL: String { "http://127.0.0.1:\(app.port)" }

    /// Waits until every worker has a ready Redis connection (each loop is asked) and /readyz,
    /// which PINGs Redis now, says so too (a worker that sent nothing since Redis stalled still
    /// counts itself ready).
    func waitUntilReady() throws {
        try waitUntil("every worker of the service is ready", interval: 0.05) {
            app.allWorkersReady() && (try? CurlClient.request("GET", baseURL + "/readyz"))?.status == 200
        }
    }

    /// Waits until Redis holds `member`'s answer under `campaign` as spelled. A miss sends its
    /// store to Redis just before it answers, over the answering worker's own connection; the
    /// next request may land on another worker, whose read could reach Redis first. Call this
    /// between a miss and a read that must be a hit (not needed with WORKERS=1, one connection).
    func waitUntilCached(member: String, campaign: String = FakeVoucherify.campaignID) throws {
        try waitUntil("Redis holds the answer for \(member) under \(campaign)") {
            try redis.cli("HEXISTS", answersKey(member), campaign) == "1"
        }
    }

    /// POSTs a Connect JSON request to GetMemberExpiration.
    func get(_ json: String, headers: [String] = []) throws -> HTTPResult {
        try CurlClient.request("POST", baseURL + Self.rpc, body: Data(json.utf8), headers: ["content-type: application/json"] + headers)
    }

    func get(member: String, campaign: String = FakeVoucherify.campaignID, extra: String = "") throws -> HTTPResult {
        try get(#"{"campaign":"\#(campaign)","member":"\#(member)"\#(extra)}"#)
    }
}

/// The Redis hash holding a member's cached answers, one field per campaign spelling.
func answersKey(_ member: String) -> String { "pe:{\(member)}:answers" }

extension ServiceUnderTest {
    /// gRPC health over Connect JSON and binary gRPC (as a Kubernetes `grpc` probe asks: the
    /// empty request; NOT_SERVING is 2) both say NOT_SERVING.
    func expectHealthNotServing() throws {
        let health = try CurlClient.request("POST", baseURL + "/grpc.health.v1.Health/Check", body: Data(#"{"service":""}"#.utf8),
                                            headers: ["content-type: application/json"])
        #expect(health.json["status"] as? String == "NOT_SERVING")
        let probe = try CurlClient.request("POST", baseURL + "/grpc.health.v1.Health/Check", body: Data([0, 0, 0, 0, 0]),
                                           headers: ["content-type: application/grpc", "te: trailers"])
        #expect(probe.headers["grpc-status"] == "0")
        #expect([UInt8](probe.body) == [0, 0, 0, 0, 2, 0x08, 2])
    }
}
