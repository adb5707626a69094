import Dispatch
import EventLoop
import Glibc
import HTTPClient
import Logging
import Synchronization
import Testing
@testable import HTTPServer

/// Answers every request with the response its path names, keeps the writers of `/hold`,
/// describes the request it got for `/echo`, and answers a broken limit with 413 naming the
/// method and path it was given.
final class ScriptedHandler: HTTPHandler {
    var held: [HTTPResponseWriter] = []

    func requestBodyLimit(method: String, path: String) -> Int { 1024 }

    func limitExceeded(_ violation: HTTPLimitViolation, version: HTTPVersion, method: String, path: String, contentType: String?) -> HTTPResponse {
        HTTPResponse(status: 413, body: Array("limit \(method) \(path)".utf8))
    }

    func handle(_ request: HTTPRequest, writer: HTTPResponseWriter) {
        switch request.path {
        case "/trailers":
            writer.respond(HTTPResponse(status: 200, headers: [("content-type", "application/grpc")], body: Array("payload".utf8),
                                        trailers: [("grpc-status", "0"), ("grpc-message", "all%20good")]))
        case "/trailers-only":
            writer.respond(HTTPResponse(status: 200, headers: [("content-type", "application/grpc")],
                                        trailers: [("grpc-status", "5"), ("grpc-message", "missing")]))
        case "/big":
            // Many writes' worth (libevent writes at most 16 KiB a time): still queued for a while.
            writer.respond(HTTPResponse(status: 200, body: Array(repeating: UInt8(ascii: "x"), count: 1 << 20)))
        case "/hold":
            held.append(writer)
        case "/echo":
            // What the server made of the request, for the HTTP/1.1 tests.
            let summary = "\(request.version) \(request.method) \(request.path) \(request.query ?? "-") \(request.header("x-test") ?? "-") \(request.body.count)"
            writer.respond(HTTPResponse(status: 200, headers: [("content-type", "text/plain")], body: Array(summary.utf8)))
        default:
            writer.respond(HTTPResponse(status: 200, body: Array("plain".utf8)))
        }
    }
}

/// A test server whose ScriptedHandler runs on `loop`: what it holds, from the test's thread.
protocol HoldingFixture: AnyObject, Sendable {
    var loop: Loop { get }
    /// Loop-confined: touched only inside `loop.runAndWait`.
    var handler: ScriptedHandler { get }
}

extension HoldingFixture {
    var heldRequests: Int {
        (try? loop.runAndWait { [self] in handler.held.count }) ?? 0
    }

    /// Answers every held request with 200 "released".
    func releaseHeld() throws {
        try loop.runAndWait { [self] in
            for writer in handler.held { writer.respond(HTTPResponse(status: 200, body: Array("released".utf8))) }
            handler.held.removeAll()
        }
    }
}

/// One loop thread running an `HTTPServer` configured by the test: the start and the teardown
/// every server fixture here shares. `stop()` (the owner's deinit calls it) ends the loop first,
/// so the server and whatever the handler holds are freed with no loop running.
final class ServerOnLoop: @unchecked Sendable {
    let group: LoopGroup
    var loop: Loop { group.loops[0] }
    /// Loop-confined: touched only inside `loop.runAndWait`.
    private(set) var server: HTTPServer?
    private(set) var port = 0

    init(handler: HTTPHandler, configuration: HTTPServerConfiguration) throws {
        // As the service does: a client that closes early must not kill the test process.
        signal(SIGPIPE, SIG_IGN)
        // Loop-confined from here on: the test thread hands it over and touches it only on the loop.
        nonisolated(unsafe) let handler = handler
        group = try LoopGroup(count: 1)
        try group.start()
        port = try loop.runAndWait { [self] in
            let server = try HTTPServer(loop: loop, configuration: configuration, handler: handler,
                                        logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
            self.server = server
            return server.port
        }
    }

    func stop() {
        group.stopAndWait()
        server?.closeAll()
        server = nil
    }

    deinit { stop() }

    /// Drops the server (as a worker does at shutdown) while the loop goes on.
    func dropServer() throws {
        try loop.runAndWait { [self] in
            server?.closeAll()
            server = nil
        }
    }
}

/// One loop thread with an HTTP server and a curl client on it.
final class ServerFixture: HoldingFixture, @unchecked Sendable {
    private let running: ServerOnLoop
    var loop: Loop { running.loop }
    let handler = ScriptedHandler()
    var server: HTTPServer? { running.server }
    var port: Int { running.port }
    /// Loop-confined: touched only inside `loop.runAndWait`.
    private(set) var curl: CurlMulti?

    init(idleTimeoutSeconds: Int = 120) throws {
        _ = curlReady
        var configuration = HTTPServerConfiguration(listen: "127.0.0.1:0")
        configuration.idleTimeoutSeconds = idleTimeoutSeconds
        running = try ServerOnLoop(handler: handler, configuration: configuration)
        try loop.runAndWait { [self] in curl = try CurlMulti(loop: loop) }
    }

    /// The loop stops first; the server, the curl handle and any held writers are then freed
    /// here, with no loop running.
    deinit { running.stop() }

    /// One h2c request with the project's libcurl client; waits for its answer.
    func get(_ path: String) throws -> HTTPClientResponse {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<HTTPClientResponse, HTTPClientError>?>(nil)
        let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)", version: .http2PriorKnowledge)
        try loop.runAndWait { [self] in
            _ = try curl!.start(request) { result in
                outcome.withLock { $0 = result }
                done.signal()
            }
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }


    /// Drops the server (as a worker does at shutdown) while the fixture keeps its loop.
    func dropServer() throws { try running.dropServer() }
}

let curlReady: Void = { try? Curl.globalInit() }()

@Suite(.serialized) struct HTTPServerTests {
    @Test func sendsTrailersAfterTheBody() throws {
        let fixture = try ServerFixture()
        let response = try fixture.get("/trailers")
        #expect(response.status == 200)
        #expect(response.httpVersion == 2)
        #expect(String(decoding: response.body, as: UTF8.self) == "payload")
        // libcurl reports trailer fields through the header callback, after the body.
        #expect(response.header("grpc-status") == "0")
        #expect(response.header("grpc-message") == "all%20good")
        #expect(response.header("content-type") == "application/grpc")
    }

    @Test func sendsTrailersWithoutABody() throws {
        let fixture = try ServerFixture()
        let response = try fixture.get("/trailers-only")
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(response.header("grpc-status") == "5")
        #expect(response.header("grpc-message") == "missing")
    }

    @Test func anAcceptedSocketThatCannotBeWatchedIsClosedAndTheServerGoesOn() throws {
        let fixture = try ServerFixture()
        // A descriptor epoll refuses (EPERM for /dev/null; the test owns it, so no other test's
        // descriptor can be hit): set-up fails after the connection object exists, and it must
        // close through its one teardown path (which closes the descriptor), not linger.
        let open = try fixture.loop.runAndWait { () -> Int in
            let fd = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
            fixture.server!.accept(fd)
            return fixture.server!.openConnections
        }
        #expect(open == 0)
        #expect(try fixture.get("/").status == 200)
    }

    @Test func aConnectionWaitingForItsAnswerIsNotIdle() throws {
        let fixture = try ServerFixture(idleTimeoutSeconds: 1)
        let answer = Mutex<Result<HTTPClientResponse, HTTPClientError>?>(nil)
        try fixture.loop.runAndWait { [fixture] in
            let request = HTTPClientRequest(url: "http://127.0.0.1:\(fixture.port)/hold", version: .http2PriorKnowledge,
                                            totalTimeoutMilliseconds: 30_000)
            _ = try fixture.curl!.start(request) { result in answer.withLock { $0 = result } }
        }
        let guardDeadline = ContinuousClock.now + .seconds(30)
        while try fixture.loop.runAndWait({ fixture.handler.held.isEmpty }), ContinuousClock.now < guardDeadline { usleep(2_000) }
        // Quiet for twice the idle timeout while the handler works (a WarmMembers call runs for minutes).
        usleep(2_000_000)
        let stillOpen = try fixture.loop.runAndWait { () -> Bool in
            let writer = fixture.handler.held[0]
            writer.respond(HTTPResponse(status: 200, body: Array("done".utf8)))
            return !writer.isCancelled
        }
        #expect(stillOpen)
        while answer.withLock({ $0 == nil }), ContinuousClock.now < guardDeadline { usleep(2_000) }
        #expect(try answer.withLock { try $0?.get().status } == 200)
        // Answered, the connection is idle again, and the timeout closes it.
        while try fixture.loop.runAndWait({ fixture.server!.openConnections }) > 0, ContinuousClock.now < guardDeadline { usleep(10_000) }
        #expect(try fixture.loop.runAndWait { fixture.server!.openConnections } == 0)
    }

    @Test func aWriterHeldPastTheServerIsCancelledAndIgnoresALateResponse() throws {
        let fixture = try ServerFixture()
        let client = try fixture.loop.runAndWait { () -> Int32 in
            // A raw h2c client: preface, empty SETTINGS, then HEADERS for GET /hold (HPACK:
            // indexed :method GET and :scheme http, a literal :path /hold, a literal :authority x).
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(fixture.port).bigEndian
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let block: [UInt8] = [0x82, 0x86, 0x44, 0x05] + Array("/hold".utf8) + [0x41, 0x01, UInt8(ascii: "x")]
            let headers: [UInt8] = [0, 0, UInt8(block.count), 0x01, 0x05, 0, 0, 0, 1] + block
            let bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 0x04, 0, 0, 0, 0, 0] + headers
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            return fd
        }
        defer { Glibc.close(client) }
        // Wait until the handler holds the writer (the condition ends the wait; 30 s is a guard).
        let deadline = ContinuousClock.now + .seconds(30)
        while try fixture.loop.runAndWait({ fixture.handler.held.isEmpty }), ContinuousClock.now < deadline { usleep(2_000) }
        #expect(try fixture.loop.runAndWait { fixture.handler.held.count } == 1)
        try fixture.dropServer()
        let late = try fixture.loop.runAndWait { () -> Bool in
            let writer = fixture.handler.held[0]
            writer.respond(HTTPResponse(status: 200, body: Array("late".utf8)))
            return writer.isCancelled && !writer.hasResponded
        }
        #expect(late)
    }
}

@Suite struct HTTPHeadersTests {
    @Test func valuesLongerThan64KiBKeepTheirLength() {
        let long = String(repeating: "v", count: 70_000)
        var headers = HTTPHeaders()
        headers.append(name: "x-long", value: long)
        headers.append(name: "x-after", value: "after")
        #expect(headers.first(named: "x-long") == long)
        #expect(headers.first(named: "x-after") == "after")
    }

    /// Lengths below 128 take one byte, longer ones four: both sides of the boundary round-trip.
    @Test(arguments: [0, 1, 127, 128, 129, 65_535, 65_536])
    func lengthsOnBothSidesOfTheShortForm(_ length: Int) {
        let name = String(repeating: "n", count: max(1, length))
        let value = String(repeating: "v", count: length)
        let headers = HTTPHeaders([(name, value), ("after", "x")])
        #expect(headers.first(named: name) == value)
        #expect(headers.first(named: "after") == "x")
    }

    @Test func firstValueWinsAndNamesAreExact() {
        let headers = HTTPHeaders([("a", "1"), ("b", "2"), ("a", "3")])
        #expect(headers.first(named: "a") == "1")
        #expect(headers.first(named: "B") == nil)
        #expect(headers.first(named: "c") == nil)
    }
}
