import Codecs
import EventLoop
import HTTPServer
import Logging
import SwiftProtobuf
import TestSupport
import Testing
@testable import RPC

/// A method that notes a cache result and upstream reads, as the member RPCs do.
private final class NotingMethod: UnaryMethod {
    let path = "/test.v1.Echo/Noting"
    let name = "Noting"
    let hasNoSideEffects = true
    var results = ["hit"]
    var reads = 0

    func call(_ request: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        for result in results { context.record.noteCacheResult(result) }
        context.record.upstreamReads += reads
        reply(.success(UnaryReply(body: Array("{}".utf8))))
    }
}

/// One access line per request, with `x-request-id` taken from the request or made up, and
/// echoed in every protocol's answer.
@Suite struct AccessLogTests {
    private static func isGeneratedID(_ id: String?) -> Bool {
        guard let id else { return false }
        return id.utf8.count == 32 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    @Test func aConnectCallEchoesTheCallersRequestIDAndLogsOneLineWithItsFields() throws {
        let fixture = try RouterFixture()
        let writer = fixture.call(headers: [("content-type", "application/json"), ("x-request-id", "caller-id-1")], body: #"{"text":"hi"}"#)
        #expect(writer.header("x-request-id") == "caller-id-1")
        let line = try #require(fixture.accessLines.only)
        #expect(line.level == .info)
        #expect(line["request_id"] == "caller-id-1")
        #expect(line["method"] == "Echo")
        #expect(line["protocol"] == "connect")
        #expect(line["http_version"] == "2")
        #expect(line["status"] == "200")
        #expect(line["code"] == "ok")
        #expect(line["upstream_reads"] == "0")
        #expect(line["peer"] == "127.0.0.1:50000")
        #expect(line["cache"] == nil)
        let duration = try #require(line["duration_ms"].flatMap(Double.init))
        #expect(duration >= 0 && duration < 10_000)
        #expect(fixture.outcomes.carriers == [.connect])
    }

    @Test func aMissingOrUnacceptableRequestIDIsReplacedByANewOne() throws {
        let fixture = try RouterFixture()
        let tooLong = String(repeating: "a", count: 129)
        var seen: Set<String> = []
        for given in [nil, "", tooLong, "has space", "tab\there", "caf\u{E9}"] {
            let headers = [("content-type", "application/json")] + (given.map { [("x-request-id", $0)] } ?? [])
            let writer = fixture.call(headers: headers, body: "{}")
            let id = writer.header("x-request-id")
            #expect(Self.isGeneratedID(id), "\(String(describing: given)) → \(String(describing: id))")
            seen.insert(id ?? "")
        }
        #expect(seen.count == 6, "generated ids repeat: \(seen)")
        // The longest acceptable one, every visible ASCII character, is kept as sent.
        let longest = String(repeating: "~!", count: 64)
        #expect(fixture.call(headers: [("content-type", "application/json"), ("x-request-id", longest)], body: "{}").header("x-request-id") == longest)
        #expect(fixture.accessLines.count == 7)
    }

    @Test func gRPCSendsTheRequestIDInItsHeadersWhetherItSucceedsOrFails() throws {
        let fixture = try RouterFixture()
        let message: [UInt8] = try Google_Protobuf_Struct(fields: ["text": Google_Protobuf_Value(stringValue: "g")]).serializedBytes()
        let ok = fixture.call("POST", path: fixture.method.path, query: nil,
                              headers: [("content-type", "application/grpc"), ("te", "trailers"), ("x-request-id", "grpc-ok")],
                              bytes: GRPCWire.frame(message, flag: 0))
        #expect(ok.header("x-request-id") == "grpc-ok")
        #expect(ok.trailer("grpc-status") == "0")
        // Trailers-only: the status and the request id travel in the one HEADERS frame.
        let failed = fixture.call("POST", path: fixture.method.path, query: nil,
                                  headers: [("content-type", "application/grpc"), ("te", "trailers"), ("x-request-id", "grpc-bad")],
                                  bytes: [0, 0, 0])
        #expect(failed.header("x-request-id") == "grpc-bad")
        #expect(failed.header("grpc-status") == "13")
        let web = fixture.call("POST", path: fixture.method.path, query: nil, headers: [("content-type", "application/grpc-web")],
                               bytes: GRPCWire.frame(message, flag: 0))
        #expect(Self.isGeneratedID(web.header("x-request-id")))
        let lines = fixture.accessLines
        #expect(lines.map { $0["protocol"] } == ["grpc", "grpc", "grpc_web"])
        #expect(lines.map { $0["code"] } == ["ok", "internal", "ok"])
        #expect(lines.map { $0["status"] } == ["200", "200", "200"])
    }

    @Test func plainEndpointsRefusalsAndUnknownPathsAreLoggedAndCounted() throws {
        let fixture = try RouterFixture()
        let health = fixture.call("GET", path: "/healthz", headers: [("x-request-id", "probe")])
        #expect(health.header("x-request-id") == "probe")
        #expect(fixture.call("DELETE", path: "/healthz").response?.status == 405)
        #expect(fixture.call(headers: [("content-type", "text/plain")]).response?.status == 415)
        #expect(fixture.call("PUT").response?.status == 405)
        let grpcOverHTTP1 = fixture.call(headers: [("content-type", "application/grpc")], version: .http1_1)
        #expect(grpcOverHTTP1.response?.status == 505)
        let unknown = fixture.call(path: "/test.v1.Echo/Nothing", body: "{}", version: .http1_1)
        #expect(unknown.response?.status == 404)
        #expect(Self.isGeneratedID(unknown.header("x-request-id")))

        let lines = fixture.accessLines
        #expect(lines.count == 6)
        #expect(lines[0]["method"] == "/healthz" && lines[0]["protocol"] == "http" && lines[0]["status"] == "200")
        #expect(lines[0]["code"] == nil && lines[0]["upstream_reads"] == nil)
        #expect(lines[1]["status"] == "405" && lines[2]["status"] == "415" && lines[3]["status"] == "405" && lines[4]["status"] == "505")
        #expect(lines[5]["method"] == "unknown" && lines[5]["path"] == "/test.v1.Echo/Nothing" && lines[5]["code"] == "unimplemented")
        #expect(lines[5]["http_version"] == "1.1")
        #expect(fixture.metrics.refused == [.methodNotAllowed, .unsupportedMediaType, .methodNotAllowed, .httpVersionNotSupported])
        #expect(fixture.metrics.endpoints["200"] == 1 && fixture.metrics.endpoints["405"] == 1)
        #expect(fixture.outcomes["415"] == 1 && fixture.outcomes["405"] == 1 && fixture.outcomes["505"] == 1)
        #expect(fixture.unknown["unimplemented"] == 1)
    }

    @Test func aMethodNotesItsCacheResultAndUpstreamReads() throws {
        let loop = try Loop()
        let method = NotingMethod()
        let log = CapturedLog()
        let router = RPCRouter(loop: loop, methods: [method], plainRoutes: [:], maxBodyBytes: 1024, metrics: RecordingMetrics(),
                               logger: log.logger(level: .info))
        func call() {
            router.handle(HTTPRequest(version: .http2, method: "POST", path: method.path, headers: HTTPHeaders([("content-type", "application/json")]),
                                      body: Array("{}".utf8)), writer: RecordingWriter())
        }
        method.reads = 2
        method.results = ["miss"]
        call()
        // A batch whose members were served differently.
        method.reads = 0
        method.results = ["hit", "hit", "stale"]
        call()
        method.results = ["negative", "negative"]
        call()
        let lines = log.entries("request")
        #expect(lines.map { $0["cache"] } == ["miss", "mixed", "negative"])
        #expect(lines.map { $0["upstream_reads"] } == ["2", "0", "0"])
    }

    @Test func aCallWhoseCallerWentAwayIsLoggedOnceAsCanceled() throws {
        let method = EchoMethod()
        method.holds = true
        let fixture = try RouterFixture(method: method)
        let writer = fixture.call(body: "{}")
        #expect(fixture.accessLines.isEmpty)
        writer.cancel()
        method.held?(.success(UnaryReply(body: Array("{}".utf8))))
        let line = try #require(fixture.accessLines.only)
        #expect(line["code"] == "canceled")
        #expect(line["status"] == nil)
        #expect(fixture.outcomes["canceled"] == 1 && fixture.outcomes["ok"] == 0)
    }

    /// A body that trickled in spends the caller's time: its deadline and logged duration run
    /// from when the headers arrived.
    @Test func theDeadlineAndTheDurationStartWhenTheHeadersArrived() throws {
        let method = EchoMethod()
        method.holds = true
        let fixture = try RouterFixture(method: method)
        let arrived = fixture.loop.monotonicMilliseconds - 5000
        _ = fixture.call(headers: [("content-type", "application/json"), ("connect-timeout-ms", "60000")], body: "{}", headersArrivedAt: arrived)
        #expect(try #require(method.lastContext).deadline == arrived + 60_000)
        method.held?(.success(UnaryReply(body: Array("{}".utf8))))
        let duration = try #require(fixture.accessLines.only?["duration_ms"].flatMap(Double.init))
        #expect(duration >= 5000 && duration < 60_000)
        // An unknown arrival (0) starts now.
        let before = fixture.loop.monotonicMilliseconds
        _ = fixture.call(headers: [("content-type", "application/json"), ("connect-timeout-ms", "60000")], body: "{}")
        #expect(try #require(method.lastContext).deadline >= before + 60_000)
    }

    @Test func anAnswerToABrokenLimitCarriesARequestIDAndIsLogged() throws {
        let fixture = try RouterFixture()
        let response = fixture.router.limitExceeded(.bodyTooLarge(limit: 2048), version: .http1_1, method: "POST", path: fixture.method.path,
                                                    contentType: "application/json")
        let id = response.headers.first { $0.name == "x-request-id" }?.value
        #expect(Self.isGeneratedID(id))
        let line = try #require(fixture.accessLines.only)
        #expect(line["request_id"] == id && line["method"] == "Echo" && line["status"] == "429" && line["code"] == "resource_exhausted")
        #expect(line["duration_ms"] == nil)
    }

    /// Credentials, signatures and bodies never reach the log: only the listed fields do.
    @Test func theAccessLineHoldsNoSecrets() throws {
        let fixture = try RouterFixture()
        _ = fixture.call(headers: [("content-type", "application/json"), ("authorization", "Bearer s3cr3t-token"),
                                   ("x-voucherify-signature", "sig-s3cr3t"), ("cookie", "session=s3cr3t")],
                         body: #"{"text":"s3cr3t-body"}"#)
        let line = try #require(fixture.accessLines.only)
        #expect(Set(line.metadata.keys).isSubset(of: ["request_id", "method", "protocol", "http_version", "status", "code", "duration_ms",
                                                       "cache", "upstream_reads", "peer", "path"]))
        #expect(!line.metadata.values.contains { "\($0)".contains("s3cr3t") })
    }
}

extension Array {
    /// The one element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}
