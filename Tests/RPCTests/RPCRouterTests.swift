import Codecs
import Dispatch
import EventLoop
import Foundation
import Gzip
import HTTPServer
import Logging
import SwiftProtobuf
import Synchronization
import Testing
import TestSupport
@testable import RPC

/// The response writer of a request answered in memory: no sockets, no HTTP/2. It records
/// every `respond` call, so a test sees a router that answers twice or after cancellation.
final class RecordingWriter: HTTPResponseWriter {
    private(set) var responses: [HTTPResponse] = []
    var isCancelled = false
    var hasResponded: Bool { !responses.isEmpty }
    var onCancel: (() -> Void)?

    func respond(_ response: HTTPResponse) {
        responses.append(response)
    }

    var response: HTTPResponse? { responses.first }
    var json: JSONObject? { response.flatMap { try? JSONParser.parse($0.body).objectValue } }
    func header(_ name: String) -> String? { response?.headers.first { $0.name == name }?.value }

    func cancel() {
        isCancelled = true
        onCancel?()
    }
}

/// Echoes the request's `text` back as `echo`, in the request's codec, or answers what the
/// test scripted. (A `google.protobuf.Struct` stands for a generated request message.)
final class EchoMethod: UnaryMethod {
    let path = "/test.v1.Echo/Echo"
    let name = "Echo"
    let hasNoSideEffects: Bool
    var defaultTimeoutMilliseconds: Int?
    var maxRequestBodyBytes: Int?
    var observesCancellation = false
    var scripted: Result<UnaryReply, RPCError>?
    /// When set, the method keeps the reply for later instead of answering.
    var held: ((Result<UnaryReply, RPCError>) -> Void)?
    var holds = false
    private(set) var lastContext: RPCContext?

    init(hasNoSideEffects: Bool = true) { self.hasNoSideEffects = hasNoSideEffects }

    func call(_ request: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        lastContext = context
        if holds { return held = reply }
        if let scripted { return reply(scripted) }
        let message: Google_Protobuf_Struct
        do {
            message = try request.decode()
        } catch {
            return reply(.failure(error))
        }
        let answer = Google_Protobuf_Struct(fields: ["echo": Google_Protobuf_Value(stringValue: message.fields["text"]?.stringValue ?? "")])
        let body: [UInt8] = context.codec == .json ? try! answer.jsonUTF8Bytes() : try! answer.serializedBytes()
        reply(.success(UnaryReply(body: body, headers: [("x-cache", "hit")])))
    }
}

/// One route's answers by outcome: "ok", a code's name, or an HTTP status.
final class CountingOutcomes: RouteMetrics, Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let protocols = Mutex<[RequestProtocol]>([])

    func answered(over carrier: RequestProtocol, _ outcome: RequestOutcome, seconds: Double?) {
        let key = switch outcome {
        case .rpc(let code): code?.rawValue ?? "ok"
        case .http(let status): String(status)
        }
        counts.withLock { $0[key, default: 0] += 1 }
        protocols.withLock { $0.append(carrier) }
    }

    subscript(outcome: String) -> Int { counts.withLock { $0[outcome, default: 0] } }
    var carriers: [RequestProtocol] { protocols.withLock { $0 } }
}

/// What the router reports: the test method's, the plain endpoints', unknown paths' and refusals.
final class RecordingMetrics: RouterMetrics, Sendable {
    let outcomes = CountingOutcomes()
    let endpoints = CountingOutcomes()
    let unknown = CountingOutcomes()
    private let refusals = Mutex<[RouterRefusal]>([])

    func method(_ name: String) -> RouteMetrics { outcomes }
    func endpoint(_ path: String) -> RouteMetrics { endpoints }
    var unknownRoute: RouteMetrics { unknown }
    func refused(_ reason: RouterRefusal) { refusals.withLock { $0.append(reason) } }
    var refused: [RouterRefusal] { refusals.withLock { $0 } }
}

struct RouterFixture {
    let loop: Loop
    let method: EchoMethod
    let router: RPCRouter
    let metrics = RecordingMetrics()
    let log = CapturedLog()
    var outcomes: CountingOutcomes { metrics.outcomes }
    var unknown: CountingOutcomes { metrics.unknown }

    init(method: EchoMethod = EchoMethod(), loop: Loop? = nil) throws {
        self.loop = try loop ?? Loop()
        self.method = method
        router = RPCRouter(
            loop: self.loop, methods: [method],
            plainRoutes: ["/healthz": .get { HTTPResponse(status: 200, body: Array("ok".utf8)) }],
            maxBodyBytes: 2048, metrics: metrics, logger: log.logger(level: .info))
    }

    func call(_ method: String = "POST", path: String = "/test.v1.Echo/Echo", query: String? = nil,
              headers: [(name: String, value: String)] = [("content-type", "application/json")], body: String = "",
              version: HTTPVersion = .http2, headersArrivedAt: Int64 = 0) -> RecordingWriter {
        call(method, path: path, query: query, headers: headers, bytes: Array(body.utf8), version: version, headersArrivedAt: headersArrivedAt)
    }

    func call(_ method: String, path: String, query: String?, headers: [(name: String, value: String)], bytes: [UInt8],
              version: HTTPVersion = .http2, headersArrivedAt: Int64 = 0) -> RecordingWriter {
        let writer = RecordingWriter()
        router.handle(HTTPRequest(version: version, method: method, path: path, query: query, headers: HTTPHeaders(headers), body: bytes,
                                  peer: "127.0.0.1:50000", headersArrivedAt: headersArrivedAt), writer: writer)
        return writer
    }

    /// The access lines logged so far.
    var accessLines: [CapturedLog.Entry] { log.entries("request") }
}

@Suite struct RPCRouterTests {
    @Test func answersAUnaryJSONCall() throws {
        let fixture = try RouterFixture()
        let writer = fixture.call(body: #"{"text":"hi"}"#)
        #expect(writer.response?.status == 200)
        #expect(writer.header("content-type") == "application/json")
        #expect(writer.header("x-cache") == "hit")
        #expect(writer.json?["echo"] == .string("hi"))
        #expect(writer.response?.trailers.isEmpty == true)
        #expect(fixture.outcomes["ok"] == 1)
    }

    @Test func anEmptyBodyIsTheEmptyMessage() throws {
        let writer = try RouterFixture().call(body: "")
        #expect(writer.json?["echo"] == .string(""))
    }

    @Test func aMethodMaySetItsOwnDefaultDeadlineAndBodyLimit() throws {
        let method = EchoMethod()
        method.defaultTimeoutMilliseconds = 300_000
        method.maxRequestBodyBytes = 640 * 1024
        let fixture = try RouterFixture(method: method)
        #expect(fixture.router.requestBodyLimit(method: "POST", path: method.path) == 640 * 1024)
        #expect(fixture.router.requestBodyLimit(method: "POST", path: "/test.v1.Echo/Other") == 2048)
        let before = fixture.loop.monotonicMilliseconds
        _ = fixture.call(body: "{}")
        let unnamed = try #require(method.lastContext).deadline - before
        #expect((299_000...301_000).contains(unnamed))
        let beforeNamed = fixture.loop.monotonicMilliseconds
        _ = fixture.call(headers: [("content-type", "application/json"), ("connect-timeout-ms", "1000")], body: "{}")
        let named = try #require(method.lastContext)
        #expect((1000...2000).contains(named.deadline - beforeNamed))
        // A batch answers with what it has a little before the caller gives up.
        let replyBy = named.replyDeadline(now: beforeNamed)
        #expect(replyBy < named.deadline && replyBy >= named.deadline - 250)
    }

    @Test func answersConnectGET() throws {
        let message = try #require(#"{"text":"a b"}"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        let writer = try RouterFixture().call("GET", query: "encoding=json&message=\(message)", headers: [])
        #expect(writer.response?.status == 200)
        #expect(writer.json?["echo"] == .string("a b"))
    }

    @Test func getIsRefusedForMethodsWithSideEffects() throws {
        let fixture = try RouterFixture(method: EchoMethod(hasNoSideEffects: false))
        let writer = fixture.call("GET", query: "encoding=json&message=%7B%7D", headers: [])
        #expect(writer.response?.status == 405)
        #expect(writer.header("allow") == "POST")
        #expect(writer.json?["code"] == .string("unimplemented"))
    }

    @Test func unknownPathIs404Unimplemented() throws {
        let fixture = try RouterFixture()
        let writer = fixture.call(path: "/test.v1.Echo/Nope")
        #expect(writer.response?.status == 404)
        #expect(writer.json?["code"] == .string("unimplemented"))
        #expect(fixture.unknown["unimplemented"] == 1)
    }

    @Test func plainRoutesKeepTheirMethod() throws {
        let fixture = try RouterFixture()
        #expect(fixture.call("GET", path: "/healthz", headers: []).response?.status == 200)
        let wrong = fixture.call("POST", path: "/healthz")
        #expect(wrong.response?.status == 405)
        #expect(wrong.header("allow") == "GET, HEAD")
        // HEAD is answered as GET (the server leaves the body out).
        #expect(fixture.call("HEAD", path: "/healthz", headers: []).response?.status == 200)
    }

    @Test(arguments: ["text/plain", "application/xml", "", "application/grpc-web-text"])
    func otherContentTypesAre415(_ contentType: String) throws {
        let writer = try RouterFixture().call(headers: [("content-type", contentType)], body: "{}")
        #expect(writer.response?.status == 415)
        #expect(writer.header("accept-post")?.hasPrefix("application/json, application/proto") == true)
    }

    @Test func protocolVersionOtherThanOneIsInvalid() throws {
        let writer = try RouterFixture().call(headers: [("content-type", "application/json"), ("connect-protocol-version", "2")], body: "{}")
        #expect(writer.response?.status == 400)
        #expect(writer.json?["code"] == .string("invalid_argument"))
    }

    @Test func malformedJSONIsInvalidArgument() throws {
        let fixture = try RouterFixture()
        let writer = fixture.call(body: "{")
        #expect(writer.response?.status == 400)
        #expect(fixture.outcomes["invalid_argument"] == 1)
    }

    @Test func gzipRequestBodiesAreDecodedWithinTheLimit() throws {
        let fixture = try RouterFixture()
        let headers = [("content-type", "application/json"), ("content-encoding", "gzip")]
        let ok = fixture.call("POST", path: fixture.method.path, query: nil, headers: headers, bytes: Gzip.compress(Array(#"{"text":"z"}"#.utf8)))
        #expect(ok.json?["echo"] == .string("z"))
        let bomb = Gzip.compress(Array(("{\"text\":\"" + String(repeating: "a", count: 10_000) + "\"}").utf8))
        let tooLarge = fixture.call("POST", path: fixture.method.path, query: nil, headers: headers, bytes: bomb)
        #expect(tooLarge.response?.status == 429)
        #expect(tooLarge.json?["code"] == .string("resource_exhausted"))
        let unknown = fixture.call(headers: [("content-type", "application/json"), ("content-encoding", "br")], body: "{}")
        #expect(unknown.json?["code"] == .string("unimplemented"))
    }

    /// A method with a larger limit (WarmMembers) takes a gzip'd body that decompresses past the
    /// default, as the official clients send it.
    @Test func gzipBodiesGetTheMethodsOwnLimit() throws {
        let method = EchoMethod()
        method.maxRequestBodyBytes = 64 * 1024
        let fixture = try RouterFixture(method: method)
        let long = String(repeating: "a", count: 10_000)
        let writer = fixture.call("POST", path: method.path, query: nil, headers: [("content-type", "application/json"), ("content-encoding", "gzip")],
                                  bytes: Gzip.compress(Array("{\"text\":\"\(long)\"}".utf8)))
        #expect(writer.json?["echo"] == .string(long))
    }

    @Test func largeAnswersAreGzippedWhenAccepted() throws {
        let method = EchoMethod()
        method.scripted = .success(UnaryReply(body: Array(("{\"echo\":\"" + String(repeating: "b", count: 4000) + "\"}").utf8)))
        let fixture = try RouterFixture(method: method)
        let plain = fixture.call(body: "{}")
        #expect(plain.header("content-encoding") == nil)
        let zipped = fixture.call(headers: [("content-type", "application/json"), ("accept-encoding", "gzip")], body: "{}")
        #expect(zipped.header("content-encoding") == "gzip")
        #expect(try Gzip.decompress(zipped.response?.body ?? [], limit: 1 << 20) == plain.response?.body)
    }

    @Test func errorsAreConnectErrorJSONWithTheirStatus() throws {
        let method = EchoMethod()
        method.scripted = .failure(RPCError(.notFound, "no such card"))
        let fixture = try RouterFixture(method: method)
        let writer = fixture.call(body: "{}")
        #expect(writer.response?.status == 404)
        #expect(writer.json?["code"] == .string("not_found"))
        #expect(writer.json?["message"] == .string("no such card"))
        #expect(fixture.outcomes["not_found"] == 1)
    }

    @Test func aRetryAfterTravelsAsAHeader() throws {
        let method = EchoMethod()
        method.scripted = .failure(RPCError(.resourceExhausted, "rate limit", retryAfterSeconds: 20))
        let writer = try RouterFixture(method: method).call(body: "{}")
        #expect(writer.response?.status == 429)
        #expect(writer.header("retry-after") == "20")
        method.scripted = .failure(RPCError(.unavailable, "down"))
        #expect(try RouterFixture(method: method).call(body: "{}").header("retry-after") == nil)
    }

    /// The method sees the caller's deadline (or the default) and the request's headers.
    @Test func theMethodSeesTheDeadlineAndHeaders() throws {
        let fixture = try RouterFixture()
        let before = fixture.loop.monotonicMilliseconds
        _ = fixture.call(headers: [("content-type", "application/json"), ("connect-timeout-ms", "250"), ("cache-control", "no-cache")],
                         body: "{}")
        let context = try #require(fixture.method.lastContext)
        #expect((before + 250...fixture.loop.monotonicMilliseconds + 250).contains(context.deadline))
        #expect(context.header("cache-control") == "no-cache")
        _ = fixture.call(body: "{}")
        #expect(try #require(fixture.method.lastContext).deadline >= before + 15_000)
    }

    @Test func limitViolationsAreResourceExhausted() throws {
        let fixture = try RouterFixture()
        let response = fixture.router.limitExceeded(.bodyTooLarge(limit: 2048), version: .http2, method: "POST", path: fixture.method.path, contentType: nil)
        #expect(response.status == 429)
        // A gRPC caller reads the status from the protocol, not the HTTP status.
        let grpc = fixture.router.limitExceeded(.bodyTooLarge(limit: 2048), version: .http2, method: "POST", path: fixture.method.path,
                                                contentType: "application/grpc")
        #expect(grpc.status == 200)
        #expect(grpc.headers.first { $0.name == "grpc-status" }?.value == "8")
        // gRPC needs HTTP/2 whatever went wrong: over HTTP/1.1 the answer is the 505.
        let overHTTP1 = fixture.router.limitExceeded(.bodyTooLarge(limit: 2048), version: .http1_1, method: "POST", path: fixture.method.path,
                                                     contentType: "application/grpc")
        #expect(overHTTP1.status == 505)
        #expect(fixture.router.requestBodyLimit(method: "POST", path: fixture.method.path) == 2048)
        // The 505 is counted as what it is, an HTTP refusal before any call.
        #expect(fixture.outcomes["resource_exhausted"] == 2)
        #expect(fixture.outcomes["505"] == 1)
    }

    @Test func aLateAnswerAfterCancellationIsDropped() throws {
        let method = EchoMethod()
        method.holds = true
        let fixture = try RouterFixture(method: method)
        let writer = fixture.call(body: "{}")
        writer.cancel()
        method.held?(.success(UnaryReply(body: Array("{}".utf8))))
        #expect(writer.responses.isEmpty)
    }

    /// `connect-timeout-ms` arms a timer on the loop: the call ends with deadline_exceeded, and
    /// the method's late answer is dropped.
    @Test func theCallersDeadlineEndsTheCall() throws {
        let group = try LoopGroup(count: 1)
        try group.start()
        defer { group.stopAndWait() }
        let loop = group.loops[0]
        let fixture = try loop.runAndWait {
            let method = EchoMethod()
            method.holds = true
            method.observesCancellation = true
            return LoopBound(try RouterFixture(method: method, loop: loop), loop: loop)
        }
        let writer = try loop.runAndWait {
            LoopBound(fixture.value.call(headers: [("content-type", "application/json"), ("connect-timeout-ms", "20")], body: "{}"), loop: loop)
        }
        var status: Int?
        for _ in 0..<5000 { // up to 10 s: the condition, not the time, ends the wait
            status = try loop.runAndWait { writer.value.response?.status }
            if status != nil { break }
            usleep(2_000)
        }
        #expect(status == 504)
        let late = try loop.runAndWait { () -> Int in
            fixture.value.method.held?(.success(UnaryReply(body: Array("{}".utf8))))
            return writer.value.responses.count
        }
        #expect(late == 1)
        #expect(try loop.runAndWait { writer.value.json?["code"] } == .string("deadline_exceeded"))
        // A call that watches for its caller (WarmMembers) is told to stop as well.
        #expect(try loop.runAndWait { fixture.value.method.lastContext?.cancellation?.isCancelled } == true)
    }
}
