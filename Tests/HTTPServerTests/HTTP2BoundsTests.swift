import EventLoop
import Foundation
import Logging
import Synchronization
import Testing
import TestSupport
@testable import HTTPServer

/// Answers `/hold` later (keeps the writer), `/big` with 1 MiB, anything else with "ok"; answers
/// a broken limit with a status per violation and records which limits were broken.
final class BoundsHandler: HTTPHandler {
    var held: [HTTPResponseWriter] = []
    var violations: [HTTPLimitViolation] = []
    var bodiesReceived: [Int] = []

    func requestBodyLimit(method: String, path: String) -> Int { 1 << 20 }

    func limitExceeded(_ violation: HTTPLimitViolation, version: HTTPVersion, method: String, path: String, contentType: String?) -> HTTPResponse {
        violations.append(violation)
        let status = switch violation {
        case .serverBusy: 503
        case .requestTimeout: 408
        case .bodyTooLarge: 413
        case .headerListTooLarge: 431
        }
        return HTTPResponse(status: status, body: Array("limit".utf8))
    }

    func handle(_ request: HTTPRequest, writer: HTTPResponseWriter) {
        if !request.body.isEmpty { bodiesReceived.append(request.body.count) }
        switch request.path {
        case "/hold": held.append(writer)
        case "/big": writer.respond(HTTPResponse(status: 200, body: [UInt8](repeating: 0x78, count: 1 << 20)))
        case "/not-allowed": writer.respond(HTTPResponse(status: 405, body: Array("method not allowed".utf8)))
        default: writer.respond(HTTPResponse(status: 200, body: Array("ok".utf8)))
        }
    }
}

/// An in-process server on its own loop thread, configured per test.
final class BoundsFixture: @unchecked Sendable {
    private let running: ServerOnLoop
    var loop: Loop { running.loop }
    let handler = BoundsHandler()
    let stats = HTTPServerStats()
    var server: HTTPServer? { running.server }
    var port: Int { running.port }

    init(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws {
        var configuration = HTTPServerConfiguration(listen: "127.0.0.1:0")
        configuration.stats = stats
        configure(&configuration)
        running = try ServerOnLoop(handler: handler, configuration: configuration)
    }

    deinit { running.stop() }

    func onLoop<R: Sendable>(_ body: @escaping @Sendable (BoundsFixture) throws -> R) throws -> R {
        try loop.runAndWait { [self] in try body(self) }
    }

    var violations: [HTTPLimitViolation] { (try? onLoop { $0.handler.violations }) ?? [] }

    /// Waits (polling, 30 s guard) until `condition` holds on the loop.
    func waitUntil(_ what: String, _ condition: @escaping @Sendable (BoundsFixture) -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while try !onLoop(condition) {
            guard ContinuousClock.now < deadline else { throw H2AbuseError("gave up waiting until \(what)") }
            usleep(5_000)
        }
    }

    /// A fresh connection's GET is answered 200: the server serves others meanwhile.
    func servesAnotherClient() throws -> Bool {
        let client = try H2AbuseClient(port: port)
        client.request(stream: 1, path: "/")
        return client.next { $0.type == H2AbuseClient.Frame.headers && $0.stream == 1 }?.status == 200
    }
}

private typealias Frame = H2AbuseClient.Frame

private func isAnswer(_ stream: UInt32) -> (Frame) -> Bool {
    { ($0.type == Frame.headers || $0.type == Frame.rstStream) && $0.stream == stream }
}

@Suite(.serialized) struct HTTP2BoundsTests {
    @Test func uploadsPastTheConnectionBudgetAreAnswered503AndTheBudgetComesBack() throws {
        let fixture = try BoundsFixture { $0.maxBufferedRequestBytesPerConnection = 64 * 1024 }
        let client = try H2AbuseClient(port: fixture.port)
        let upload = [("content-length", "40000")]
        // The first upload reserves its declared 40 000 bytes; the second does not fit.
        client.request(stream: 1, method: "POST", path: "/upload", extra: upload, endStream: false)
        client.request(stream: 3, method: "POST", path: "/upload", extra: upload, endStream: false)
        #expect(client.next(where: isAnswer(3))?.status == 503)
        #expect(fixture.violations == [.serverBusy])
        #expect(fixture.stats.refusals(.requestBytes) == 1)
        #expect(try fixture.servesAnotherClient())
        // Once the first is answered, its bytes are back in the budget.
        client.data(stream: 1, [UInt8](repeating: 1, count: 40000), endStream: true)
        #expect(client.next(where: isAnswer(1))?.status == 200)
        client.request(stream: 5, method: "POST", path: "/upload", extra: upload, endStream: false)
        client.data(stream: 5, [UInt8](repeating: 1, count: 40000), endStream: true)
        #expect(client.next(where: isAnswer(5))?.status == 200)
        #expect(try fixture.onLoop { $0.handler.bodiesReceived } == [40000, 40000])
        #expect(try fixture.onLoop { _ in fixture.server!.openConnections } >= 1)
    }

    @Test func theWorkerBudgetSpansConnections() throws {
        let fixture = try BoundsFixture { $0.maxBufferedRequestBytesPerWorker = 64 * 1024 }
        let first = try H2AbuseClient(port: fixture.port)
        first.request(stream: 1, method: "POST", path: "/upload", extra: [("content-length", "60000")], endStream: false)
        try fixture.waitUntil("the first upload is under way") { _ in fixture.stats.openStreams == 1 }
        let second = try H2AbuseClient(port: fixture.port)
        second.request(stream: 1, method: "POST", path: "/upload", extra: [("content-length", "60000")], endStream: false)
        #expect(second.next(where: isAnswer(1))?.status == 503)
        #expect(fixture.stats.refusals(.requestBytes) == 1)
    }

    @Test func headersThatDoNotFitResetTheStreamAsRefused() throws {
        let fixture = try BoundsFixture { $0.maxBufferedRequestBytesPerConnection = 2000 }
        let client = try H2AbuseClient(port: fixture.port)
        client.request(stream: 1, method: "POST", path: "/upload", extra: [("content-length", "1500")], endStream: false)
        client.request(stream: 3, path: "/", extra: [("x-filler", String(repeating: "f", count: 300))])
        let reset = client.next(where: isAnswer(3))
        #expect(reset?.type == Frame.rstStream)
        #expect(reset?.errorCode == H2AbuseClient.refusedStream)
        #expect(fixture.violations.isEmpty)
        #expect(fixture.stats.refusals(.requestBytes) == 1)
    }

    @Test func aDeclaredLengthAboveTheLimitIsAnsweredBeforeAnyBody() throws {
        let fixture = try BoundsFixture()
        let client = try H2AbuseClient(port: fixture.port)
        client.request(stream: 1, method: "POST", path: "/upload", extra: [("content-length", "\(2 << 20)")], endStream: false)
        #expect(client.next(where: isAnswer(1))?.status == 413)
        #expect(fixture.violations == [.bodyTooLarge(limit: 1 << 20)])
        #expect(fixture.stats.refusals(.bodyTooLarge) == 1)
    }

    @Test func streamsStillUploadingAreCappedPerConnection() throws {
        let fixture = try BoundsFixture { $0.maxStreamsReceivingBodyPerConnection = 2 }
        let client = try H2AbuseClient(port: fixture.port)
        for stream: UInt32 in [1, 3, 5] { client.request(stream: stream, method: "POST", path: "/upload", endStream: false) }
        let reset = client.next(where: isAnswer(5))
        #expect(reset?.type == Frame.rstStream)
        #expect(reset?.errorCode == H2AbuseClient.refusedStream)
        #expect(fixture.stats.refusals(.uploadStreams) == 1)
        #expect(fixture.stats.refusals(.requestBytes) == 0)
        // The two under way still finish.
        client.data(stream: 1, [1, 2, 3], endStream: true)
        #expect(client.next(where: isAnswer(1))?.status == 200)
        #expect(try fixture.servesAnotherClient())
    }

    @Test func aBodyThatDoesNotArriveInTimeIsAnswered408() throws {
        let fixture = try BoundsFixture { $0.requestArrivalTimeoutSeconds = 1 }
        let client = try H2AbuseClient(port: fixture.port)
        let started = ContinuousClock.now
        client.request(stream: 1, method: "POST", path: "/upload", extra: [("content-length", "10")], endStream: false)
        client.data(stream: 1, [1, 2, 3, 4, 5])
        #expect(client.next(where: isAnswer(1))?.status == 408)
        #expect(ContinuousClock.now - started >= .milliseconds(900))
        #expect(fixture.violations == [.requestTimeout(seconds: 1)])
        #expect(fixture.stats.refusals(.requestTimeout) == 1)
        #expect(try fixture.servesAnotherClient())
    }

    /// An upload begun just before the idle deadline, still arriving when it passes, keeps its
    /// connection: it has the arrival bound instead, and is answered.
    @Test func anUploadArrivingPastTheIdleDeadlineIsAnswered() throws {
        let fixture = try BoundsFixture { $0.idleTimeoutSeconds = 2 }
        let client = try H2AbuseClient(port: fixture.port)
        usleep(1_500_000)
        client.request(stream: 1, method: "POST", path: "/upload", extra: [("content-length", "4")], endStream: false)
        client.data(stream: 1, [1, 2])
        usleep(1_500_000)
        client.data(stream: 1, [3, 4], endStream: true)
        #expect(client.next(where: isAnswer(1))?.status == 200)
        #expect(fixture.stats.refusals(.requestTimeout) == 0)
    }

    @Test func pingsDoNotKeepAnIdleConnection() throws {
        let fixture = try BoundsFixture { $0.idleTimeoutSeconds = 1 }
        let client = try H2AbuseClient(port: fixture.port)
        client.request(stream: 1, path: "/")
        #expect(client.next(where: isAnswer(1))?.status == 200)
        let started = ContinuousClock.now
        // A PING every 200 ms would reset any read timeout; the connection closes anyway.
        #expect(client.waitForClose(timeout: 20) { client.ping() })
        #expect(ContinuousClock.now - started < .seconds(15))
        try fixture.waitUntil("the connection is gone") { _ in fixture.server!.openConnections == 0 }
    }

    @Test func aRequestWithTheHandlerKeepsTheConnection() throws {
        let fixture = try BoundsFixture { $0.idleTimeoutSeconds = 1 }
        let client = try H2AbuseClient(port: fixture.port)
        client.request(stream: 1, path: "/hold")
        try fixture.waitUntil("the handler holds the request") { $0.handler.held.count == 1 }
        // Twice the idle timeout while the application works: not idle.
        #expect(!client.waitForClose(timeout: 2.2))
        try fixture.onLoop { $0.handler.held[0].respond(HTTPResponse(status: 200)) }
        #expect(client.next(where: isAnswer(1))?.status == 200)
        #expect(client.waitForClose(timeout: 20))
    }

    @Test func answersStackedForAZeroWindowReaderCloseTheConnection() throws {
        let fixture = try BoundsFixture {
            $0.maxPendingResponseBytesPerConnection = 2 << 20
            $0.pendingResponseStallSeconds = 1
        }
        // SETTINGS_INITIAL_WINDOW_SIZE 0: the server may send headers but no DATA.
        let client = try H2AbuseClient(port: fixture.port, settings: [(id: 4, value: 0)])
        for stream: UInt32 in [1, 3, 5, 7] { client.request(stream: stream, path: "/big") }
        #expect(client.waitForClose(timeout: 20) { client.ping() })
        #expect(fixture.stats.refusals(.pendingResponse) == 1)
        try fixture.waitUntil("the connection and its streams are gone") { _ in
            fixture.server!.openConnections == 0 && fixture.stats.openStreams == 0
        }
        #expect(try fixture.servesAnotherClient())
    }

    /// Twelve 1 MiB answers at once through 64 KiB stream windows: far past the cap pending, but
    /// the reader keeps taking them, so it gets them all.
    @Test func aReaderThatKeepsTakingManyLargeAnswersIsServed() throws {
        let fixture = try BoundsFixture {
            $0.maxPendingResponseBytesPerConnection = 2 << 20
            $0.pendingResponseStallSeconds = 1
        }
        // nghttp exits nonzero (and `run` throws) unless every answer arrived whole.
        _ = try run("/usr/bin/nghttp", ["-n", "-m", "12", "-w", "16", "-W", "20", "-t", "30", "http://127.0.0.1:\(fixture.port)/big"])
        #expect(fixture.stats.refusals(.pendingResponse) == 0)
    }

    @Test func aZeroWindowReaderThatPingsIsClosedWhenIdle() throws {
        let fixture = try BoundsFixture { $0.idleTimeoutSeconds = 1 }
        let client = try H2AbuseClient(port: fixture.port, settings: [(id: 4, value: 0)])
        client.request(stream: 1, path: "/big")
        #expect(client.next(where: isAnswer(1))?.status == 200)
        #expect(client.waitForClose(timeout: 20) { client.ping() })
        #expect(fixture.stats.refusals(.pendingResponse) == 0)
        try fixture.waitUntil("the stream is gone") { _ in fixture.stats.openStreams == 0 }
    }

    @Test func everyStreamIsCountedOpenAndClosedOnce() throws {
        let fixture = try BoundsFixture()
        let client = try H2AbuseClient(port: fixture.port)
        for stream: UInt32 in [1, 3, 5] { client.request(stream: stream, path: "/hold") }
        try fixture.waitUntil("three streams are open") { _ in fixture.stats.openStreams == 3 }
        // One reset by the peer, one answered, one left to the connection's teardown.
        client.send(H2AbuseClient.frame(Frame.rstStream, stream: 1, [0, 0, 0, 8]))
        try fixture.waitUntil("the reset stream is closed") { _ in fixture.stats.openStreams == 2 }
        try fixture.onLoop { $0.handler.held[1].respond(HTTPResponse(status: 200)) }
        try fixture.waitUntil("the answered stream is closed") { _ in fixture.stats.openStreams == 1 }
        try fixture.onLoop { _ in fixture.server!.closeAll() }
        #expect(fixture.stats.openStreams == 0)
    }

    @Test func headAnswersCarryNoData() throws {
        let fixture = try BoundsFixture()
        let client = try H2AbuseClient(port: fixture.port)
        var dataFrames = 0
        for (stream, path): (UInt32, String) in [(1, "/"), (3, "/not-allowed")] {
            client.request(stream: stream, method: "HEAD", path: path)
            let answer = client.next(seen: { if $0.type == Frame.data { dataFrames += 1 } }, where: isAnswer(stream))
            #expect(answer?.endStream == true)
        }
        client.request(stream: 5, path: "/")
        #expect(client.next(where: isAnswer(5))?.status == 200)
        #expect(dataFrames == 0)
    }

    @Test func drainSendsANoticeThenTheFinalGoAwayAndClosesAnIdleConnection() throws {
        let fixture = try BoundsFixture { $0.shutdownNoticeMilliseconds = 60_000 }
        let client = try H2AbuseClient(port: fixture.port)
        client.request(stream: 1, path: "/")
        #expect(client.next(where: isAnswer(1))?.status == 200)
        let drained = Atomic<Bool>(false)
        let started = ContinuousClock.now
        try fixture.onLoop { fixture in fixture.server!.drain { drained.store(true, ordering: .relaxed) } }
        var notice: Frame?
        let ping = client.next(acknowledge: false, seen: { if $0.type == Frame.goAway { notice = $0 } }) { $0.type == Frame.ping }
        #expect(ping != nil)
        #expect(notice?.lastStreamID == 0x7fff_ffff, "the notice comes first")
        #expect(notice?.errorCode == 0)
        // A stream opened before the client answered the PING is still served.
        client.request(stream: 3, path: "/")
        #expect(client.next(acknowledge: false, where: isAnswer(3))?.status == 200)
        client.send(H2AbuseClient.frame(Frame.ping, flags: 0x1, stream: 0, ping?.payload ?? []))
        let final = client.next { $0.type == Frame.goAway }
        #expect(final?.lastStreamID == 3)
        // Nothing open: closed at once, long before the notice's 60 s fallback.
        #expect(client.waitForClose(timeout: 20))
        try fixture.waitUntil("the server has drained") { _ in drained.load(ordering: .relaxed) }
        #expect(ContinuousClock.now - started < .seconds(20))
    }

    @Test func withoutAPingAckTheFinalGoAwayFollowsTheNoticeAfterItsDelay() throws {
        let fixture = try BoundsFixture { $0.shutdownNoticeMilliseconds = 300 }
        let client = try H2AbuseClient(port: fixture.port)
        client.request(stream: 1, path: "/hold")
        try fixture.waitUntil("the handler holds the request") { $0.handler.held.count == 1 }
        try fixture.onLoop { fixture in fixture.server!.drain {} }
        var goAways: [UInt32] = []
        let final = client.next(acknowledge: false) { frame in
            if frame.type == Frame.goAway, let last = frame.lastStreamID { goAways.append(last) }
            return goAways.count == 2
        }
        #expect(goAways == [0x7fff_ffff, 1])
        #expect(final != nil)
        // The stream in flight still finishes, then the connection closes.
        try fixture.onLoop { $0.handler.held[0].respond(HTTPResponse(status: 200)) }
        #expect(client.next(acknowledge: false, where: isAnswer(1))?.status == 200)
        #expect(client.waitForClose(timeout: 20))
    }
}
