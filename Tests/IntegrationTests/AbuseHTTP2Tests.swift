import Foundation
import Testing
import TestSupport

private typealias Frame = H2AbuseClient.Frame

/// HTTP/2 attacks on the real binary, each small and bounded, each asserting its bound: the
/// attacking connection is cut off or its requests refused, resident memory grows by less than
/// `memoryBound`, CPU by less than `cpuBound`, and another client is served meanwhile.
@Suite(.serialized) struct AbuseHTTP2Tests {
    /// Well below what each attack would cost unbounded (the issue measured 1 GB for unfinished
    /// webhook bodies and 340 MB for one zero-window reader).
    static let memoryBound = 64 << 20
    /// Far above what the attacks cost when bounded (well under a second here), far below a core
    /// spinning for the test's length: a loaded 2-core machine must not make this flaky.
    static let cpuBound = 10.0

    /// Runs `attack` against a fresh service and checks what it cost.
    private func withinBounds(_ attack: (H2AbuseTarget) throws -> Void) throws {
        let target = try H2AbuseTarget()
        let rss = try target.residentBytes()
        let cpu = try target.cpuSeconds()
        try attack(target)
        #expect(target.isRunning)
        let grown = try target.residentBytes() - rss
        #expect(grown < Self.memoryBound, "VmRSS grew by \(grown >> 20) MiB")
        let spent = try target.cpuSeconds() - cpu
        #expect(spent < Self.cpuBound, "the attack cost \(spent) s of CPU")
        #expect(target.servesAnotherClient())
    }

    /// CVE-2023-44487: streams opened and reset at once, far past nghttp2's reset budget.
    @Test func rapidResetIsCutOff() throws {
        try withinBounds { target in
            let client = try target.connect()
            var stream: UInt32 = 1
            for _ in 0..<40 {
                var burst: [UInt8] = []
                for _ in 0..<100 {
                    burst += H2AbuseClient.frame(Frame.headers, flags: 0x5, stream: stream, H2AbuseClient.requestBlock(method: "GET", path: "/healthz"))
                    burst += H2AbuseClient.frame(Frame.rstStream, stream: stream, [0, 0, 0, 8])
                    stream += 2
                }
                guard client.send(burst) else { break }
            }
            #expect(target.servesAnotherClient())
            let goAway = client.next(timeout: 30) { $0.type == Frame.goAway }
            #expect(goAway != nil || client.peerClosed, "the resetting connection is sent away")
        }
    }

    /// CONTINUATION flood (CVE-2024-27316 class): a header block that never ends.
    @Test func continuationFloodIsCutOff() throws {
        try withinBounds { target in
            let client = try target.connect()
            client.send(H2AbuseClient.frame(Frame.headers, flags: 0x1, stream: 1, H2AbuseClient.requestBlock(method: "GET", path: "/healthz")))
            let piece = H2AbuseClient.frame(Frame.continuation, stream: 1, H2AbuseClient.headerBlock([("x-flood", String(repeating: "c", count: 1000))]))
            for _ in 0..<2000 where client.send(piece) {}
            #expect(target.servesAnotherClient())
            #expect(client.waitForClose(timeout: 30), "the flooding connection is closed")
        }
    }

    /// An HPACK bomb: one 4 000-byte field in the dynamic table, then a header block of
    /// one-byte references to it (16 KiB frames, as many CONTINUATIONs as allowed): hundreds of
    /// megabytes of header list from 144 KiB on the wire, on several streams.
    @Test func hpackBombIsAnsweredWithoutBuffering() throws {
        try withinBounds { target in
            let client = try target.connect()
            let value = String(repeating: "b", count: 4000)
            let literal = [0x40] + H2AbuseClient.integer(6, prefixBits: 7) + Array("x-bomb".utf8) + H2AbuseClient.integer(value.utf8.count, prefixBits: 7) + Array(value.utf8)
            let references = [UInt8](repeating: 0xbe, count: 16_384)  // dynamic index 62: the newest entry
            var answers = 0
            for stream: UInt32 in stride(from: 1, through: 7, by: 2) {
                let first = H2AbuseClient.requestBlock(method: "GET", path: "/healthz") + literal
                var bytes = H2AbuseClient.frame(Frame.headers, flags: 0x1, stream: stream, first + references[..<(16_384 - first.count)])
                for index in 0..<8 { bytes += H2AbuseClient.frame(Frame.continuation, flags: index == 7 ? 0x4 : 0, stream: stream, references) }
                guard client.send(bytes) else { break }
                guard let answer = client.next(where: { ($0.type == Frame.headers || $0.type == Frame.rstStream) && $0.stream == stream }) else { break }
                #expect(answer.type == Frame.rstStream || (answer.status ?? 0) >= 400)
                answers += 1
            }
            #expect(answers > 0 || client.peerClosed)
        }
    }

    /// A reader with a closed window (SETTINGS_INITIAL_WINDOW_SIZE 0) that asks for large answers
    /// and sends PINGs to look alive: past the pending-answer cap the connection is closed.
    @Test func zeroWindowReaderThatPingsIsClosed() throws {
        let target = try H2AbuseTarget()
        try target.fleet.fake.putMember("BIG", buckets: buckets(2000))
        let url = target.service.getURL(member: "BIG", campaign: FakeVoucherify.campaignID)
        let answer = try CurlClient.request("GET", url)
        #expect(answer.status == 200)
        // Enough answers to pass the 8 MiB default cap several times over, within one connection's streams.
        let count = min(250, (32 << 20) / max(answer.body.count, 1) + 1)
        let path = String(url.dropFirst(target.service.baseURL.count))
        let rss = try target.residentBytes()
        let client = try target.connect(settings: [(id: 4, value: 0)])
        for index in 0..<count { client.request(stream: UInt32(2 * index + 1), path: path) }
        #expect(target.servesAnotherClient())
        #expect(client.waitForClose(timeout: 60) { client.ping() }, "the connection pinning answers is closed")
        let grown = try target.residentBytes() - rss
        #expect(grown < Self.memoryBound, "VmRSS grew by \(grown >> 20) MiB")
        #expect(target.servesAnotherClient())
    }

    /// Unsigned webhook deliveries declaring 1 MiB bodies that never finish, on several
    /// connections: each connection's budget takes a few; the rest are refused at once.
    @Test func unfinishedWebhookBodiesAreBounded() throws {
        try withinBounds { target in
            var clients: [H2AbuseClient] = []
            let streamsPerConnection = 64
            var refused = 0
            for _ in 0..<4 {
                let client = try target.connect()
                clients.append(client)
                let streams = (0..<streamsPerConnection).map { UInt32(2 * $0 + 1) }
                for stream in streams {
                    client.request(stream: stream, method: "POST", path: ServiceUnderTest.webhookPath,
                                   extra: [("content-type", "application/json"), ("content-length", "\(1 << 20)")], endStream: false)
                }
                // Whatever was not refused gets all but the last byte of its body.
                _ = client.next(timeout: 2) { _ in client.answeredStreams.count == streams.count }
                for stream in streams where !client.answeredStreams.contains(stream) {
                    client.upload(stream: stream, count: (1 << 20) - 1, timeout: 30)
                }
                let answered = client.answeredStreams.count
                refused += answered
                #expect(answered >= streamsPerConnection - 8, "most of the connection's uploads are refused")
            }
            #expect(refused >= 4 * (streamsPerConnection - 8))
            // The attacking connections are still open while another client is served.
            #expect(target.servesAnotherClient())
            withExtendedLifetime(clients) {}
        }
    }
}
