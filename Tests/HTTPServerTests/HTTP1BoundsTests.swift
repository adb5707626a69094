import EventLoop
import Foundation
import Glibc
import Logging
import Testing
import TestSupport
@testable import HTTPServer

/// The listener's and HTTP/1.1's bounds, attacked one at a time against a server on its own
/// loop: slow heads and bodies, idle trickles, request bytes over the budgets, the connection
/// cap, and what a drain does to idle connections. In each, another client is served meanwhile.
@Suite(.serialized) struct HTTP1BoundsTests {
    @Test func aHeadTrickledAByteAtATimeGets408WithinTheArrivalBound() throws {
        let fixture = try HTTP1BoundsFixture { $0.requestArrivalTimeoutSeconds = 2 }
        let slow = try RawTCPClient(port: fixture.port)
        let started = ContinuousClock.now
        // One byte every 200 ms would take 10 s for this head; the bound is 2 s.
        let head = Array("GET /echo HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaa\r\n\r\n".utf8)
        var answer = ""
        for byte in head {
            guard slow.send([byte]) else { break }
            #expect(try fixture.get("/echo").hasPrefix("HTTP/1.1 200 OK"), "another client is served meanwhile")
            answer += slow.readAvailable()
            if answer.contains("\r\n\r\n") { break }
            usleep(200_000)
        }
        answer += try slow.readUntilClosed()
        #expect(answer.hasPrefix("HTTP/1.1 408 "))
        #expect(answer.contains("connection: close"))
        #expect(ContinuousClock.now - started < .seconds(8))
        #expect(fixture.stats.refusals(.requestTimeout) == 1)
    }

    @Test func aBodySlowerThanTheArrivalBoundGets408() throws {
        let fixture = try HTTP1BoundsFixture { $0.requestArrivalTimeoutSeconds = 2 }
        let slow = try RawTCPClient(port: fixture.port)
        #expect(slow.send(Array("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".utf8)))
        var answer = ""
        // Bounded: 100 body bytes at one per 200 ms, far past the bound.
        for _ in 0..<100 {
            guard slow.send(Array("z".utf8)) else { break }
            answer += slow.readAvailable()
            if answer.contains("\r\n\r\n") { break }
            usleep(200_000)
        }
        answer += try slow.readUntilClosed()
        #expect(answer.hasPrefix("HTTP/1.1 408 "))
        #expect(answer.hasSuffix("timeout POST /echo"))
        #expect(try fixture.get("/echo").hasPrefix("HTTP/1.1 200 OK"))
    }

    /// A request that began just before the idle deadline has the arrival bound from then on: a
    /// pooled connection reused late is not cut off with a 408 for the idle time before it.
    @Test func aRequestBegunJustBeforeTheIdleDeadlineIsAnswered() throws {
        let fixture = try HTTP1BoundsFixture { $0.idleTimeoutSeconds = 2 }
        let client = try RawTCPClient(port: fixture.port)
        usleep(1_500_000)
        #expect(client.send(Array("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na".utf8)))
        // The idle deadline passes while the body is still arriving.
        usleep(1_500_000)
        #expect(client.send(Array("bc".utf8)))
        #expect(try client.readUntil("http1_1 POST /echo - - 3").hasPrefix("HTTP/1.1 200 OK"))
        #expect(fixture.stats.refusals(.requestTimeout) == 0)
    }

    /// Blank lines before a request begin none (RFC 9112 §2.2 lets a server skip them), so only
    /// the idle deadline ends this: each byte would restart a read timeout.
    @Test func blankLinesTrickledForeverAreClosedByTheIdleDeadline() throws {
        let fixture = try HTTP1BoundsFixture { $0.idleTimeoutSeconds = 2 }
        let slow = try RawTCPClient(port: fixture.port)
        let started = ContinuousClock.now
        var closed = false
        // Bounded: 60 × 200 ms; the idle bound is 2 s.
        for _ in 0..<60 {
            guard slow.send(Array("\r\n".utf8)), !slow.isClosedByPeer() else {
                closed = true
                break
            }
            usleep(200_000)
        }
        #expect(closed)
        #expect(ContinuousClock.now - started < .seconds(8))
        #expect(try fixture.get("/echo").hasPrefix("HTTP/1.1 200 OK"))
    }

    @Test func aDeclaredBodyOverTheWorkersBudgetIs503UntilTheBytesAreGivenBack() throws {
        let fixture = try HTTP1BoundsFixture { $0.maxBufferedRequestBytesPerWorker = 3000 }
        let first = try RawTCPClient(port: fixture.port)
        #expect(first.send(Array("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2500\r\n\r\nabc".utf8)))
        try waitUntil { fixture.requestBytesHeld >= 2500 }
        let second = try RawTCPClient(port: fixture.port)
        #expect(second.send(Array("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2500\r\n\r\n".utf8)))
        let refused = try second.readUntilClosed()
        #expect(refused.hasPrefix("HTTP/1.1 503 "))
        #expect(refused.hasSuffix("busy POST /echo"))
        #expect(fixture.stats.refusals(.requestBytes) == 1)
        // A small request still fits beside the held body.
        #expect(try fixture.get("/echo").hasPrefix("HTTP/1.1 200 OK"))
        #expect(first.send(Array(repeating: UInt8(ascii: "z"), count: 2497)))
        #expect(try first.readUntil("http1_1 POST /echo - - 2500").hasPrefix("HTTP/1.1 200 OK"))
        // Answered: the bytes are back, and the same body fits again.
        try waitUntil { fixture.requestBytesHeld == 0 }
        let third = try RawTCPClient(port: fixture.port)
        #expect(third.send(Array(("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2500\r\n\r\n" + String(repeating: "y", count: 2500)).utf8)))
        #expect(try third.readUntil("http1_1 POST /echo - - 2500").hasPrefix("HTTP/1.1 200 OK"))
    }

    @Test func aChunkedBodyGrowingPastTheConnectionsBudgetIs503() throws {
        let fixture = try HTTP1BoundsFixture { $0.maxBufferedRequestBytesPerConnection = 2000 }
        let client = try RawTCPClient(port: fixture.port)
        let chunk = String(repeating: "c", count: 1000)
        #expect(client.send(Array("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n\(chunk)\r\n".utf8)))
        #expect(client.send(Array("3e8\r\n\(chunk)\r\n".utf8)))
        let answer = try client.readUntilClosed()
        #expect(answer.hasPrefix("HTTP/1.1 503 "))
        #expect(fixture.stats.refusals(.requestBytes) == 1)
        try waitUntil { fixture.requestBytesHeld == 0 && fixture.stats.openStreams == 0 }
    }

    /// At the cap the worker stops taking connections from the shared socket (another worker
    /// may have room); a connection waiting in the backlog is served once one closes.
    @Test func atTheCapAWorkerStopsAcceptingUntilAConnectionCloses() throws {
        let fixture = try HTTP1BoundsFixture { $0.maxConnectionsPerWorker = 3 }
        var held = try (0..<3).map { _ in try RawTCPClient(port: fixture.port) }
        try waitUntil { fixture.openConnections == 3 }
        let waiting = try RawTCPClient(port: fixture.port)
        #expect(waiting.send(Array("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        // The ones already open are still served; the waiting one is not taken meanwhile.
        #expect(held[0].send(Array("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        #expect(try held[0].readUntil("http1_1 GET /echo - - 0").hasPrefix("HTTP/1.1 200 OK"))
        #expect(waiting.readAvailable() == "")
        #expect(fixture.openConnections == 3)
        held.removeLast()
        #expect(try waiting.readUntil("http1_1 GET /echo - - 0").hasPrefix("HTTP/1.1 200 OK"))
        #expect(fixture.stats.refusals(.connectionLimit) == 0)
        held.removeAll()
        withExtendedLifetime(waiting) {}
    }

    @Test func drainClosesIdleConnectionsAtOnceAndWaitsForTheBusyOne() throws {
        let fixture = try HTTP1BoundsFixture()
        let probe = try RawTCPClient(port: fixture.port)
        let keptAlive = try RawTCPClient(port: fixture.port)
        #expect(keptAlive.send(Array("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        #expect(try keptAlive.readUntil("http1_1 GET /echo - - 0").hasPrefix("HTTP/1.1 200 OK"))
        let busy = try RawTCPClient(port: fixture.port)
        #expect(busy.send(Array("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        try waitUntil { fixture.heldRequests == 1 && fixture.openConnections == 3 }
        let drained = DrainFlag()
        try fixture.loop.runAndWait { fixture.server!.drain { drained.done = true } }
        #expect(try probe.readUntilClosed() == "")
        #expect(try keptAlive.readUntilClosed() == "")
        #expect(try fixture.openConnectionsNow() == 1)
        #expect(!drained.done)
        try fixture.releaseHeld()
        #expect(try busy.readUntilClosed().contains("connection: close"))
        try waitUntil { drained.done }
        #expect(fixture.stats.openConnections == 0)
        #expect(fixture.stats.openStreams == 0)
    }

    @Test func statsCountEachConnectionAndRequestOnce() throws {
        let fixture = try HTTP1BoundsFixture()
        for _ in 0..<3 { #expect(try fixture.get("/echo").hasPrefix("HTTP/1.1 200 OK")) }
        let h2 = try run("/usr/bin/curl", ["-sS", "--http2-prior-knowledge", "http://127.0.0.1:\(fixture.port)/echo"])
        #expect(h2.hasPrefix("http2 GET /echo"))
        let busy = try RawTCPClient(port: fixture.port)
        #expect(busy.send(Array("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        try waitUntil { fixture.heldRequests == 1 }
        #expect(fixture.stats.openStreams == 1)
        #expect(fixture.stats.openConnections == 1)
        try fixture.releaseHeld()
        _ = try busy.readUntil("released")
        try waitUntil { fixture.stats.openStreams == 0 }
        withExtendedLifetime(busy) {}
        try waitUntil { fixture.openConnections == 1 }
        #expect(fixture.stats.openConnections == 1)
    }
}

/// Answers as ScriptedHandler does, with a body limit of 4096 and each limit answered with its
/// own status: 408 for the arrival bound, 503 for the byte budgets.
private final class HTTP1BoundsHandler: HTTPHandler {
    let scripted = ScriptedHandler()

    func requestBodyLimit(method: String, path: String) -> Int { 4096 }

    func limitExceeded(_ violation: HTTPLimitViolation, version: HTTPVersion, method: String, path: String, contentType: String?) -> HTTPResponse {
        switch violation {
        case .requestTimeout: return HTTPResponse(status: 408, body: Array("timeout \(method) \(path)".utf8))
        case .serverBusy: return HTTPResponse(status: 503, body: Array("busy \(method) \(path)".utf8))
        default: return scripted.limitExceeded(violation, version: version, method: method, path: path, contentType: contentType)
        }
    }

    func handle(_ request: HTTPRequest, writer: HTTPResponseWriter) {
        scripted.handle(request, writer: writer)
    }
}

private final class DrainFlag: @unchecked Sendable { var done = false }

/// One loop with a server configured by the test, reporting into its own stats.
private final class HTTP1BoundsFixture: HoldingFixture, @unchecked Sendable {
    private let running: ServerOnLoop
    var loop: Loop { running.loop }
    private let bounds = HTTP1BoundsHandler()
    var handler: ScriptedHandler { bounds.scripted }
    let stats = HTTPServerStats()
    var server: HTTPServer? { running.server }
    var port: Int { running.port }

    init(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws {
        var configuration = HTTPServerConfiguration(listen: "127.0.0.1:0")
        configuration.stats = stats
        configure(&configuration)
        running = try ServerOnLoop(handler: bounds, configuration: configuration)
    }

    deinit { running.stop() }

    var openConnections: Int { (try? openConnectionsNow()) ?? -1 }

    func openConnectionsNow() throws -> Int { try loop.runAndWait { [self] in server!.openConnections } }

    var requestBytesHeld: Int { (try? loop.runAndWait { [self] in server!.requestBytesHeld }) ?? -1 }

    /// One HTTP/1.1 request on a connection of its own: the raw answer.
    func get(_ path: String) throws -> String {
        let client = try RawTCPClient(port: port)
        #expect(client.send(Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)))
        return try client.readUntilClosed()
    }
}
