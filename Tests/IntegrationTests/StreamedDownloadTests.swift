import EventLoop
import Foundation
import HTTPClient
import Logging
import Synchronization
import Testing
import Voucherify

/// A plain HTTP/1.1 server (Python's http.server) on 127.0.0.1 with bodies worth streaming:
/// - `GET /bytes?size=N`: 200 with N bytes, the byte at offset i being i % 251, sent 64 KiB at a time;
/// - `GET /download?token=T&size=N`: the same with the test credentials and token `fresh`, else a 401;
/// - `GET /_requests`: how many requests other than these counts arrived;
/// - anything else: a 404 with a small JSON error body (`notFoundBody`).
final class BulkBodyServer: Sendable {
    static let notFoundBody = #"{"code":404,"key":"not_found","message":"no such file"}"#
    let baseURL: String
    private let child: ChildProcess

    init() throws {
        child = try ChildProcess("/usr/bin/python3", ["-u", "-c", Self.script, FakeVoucherify.appID, FakeVoucherify.appToken])
        let line = try child.waitForLine(containing: "port ")
        guard let port = line.split(separator: " ").last.flatMap({ Int($0) }) else { throw TestFailure("no port in \(line)") }
        baseURL = "http://127.0.0.1:\(port)"
    }

    func stop() { child.stop() }

    func requestCount() throws -> Int {
        let result = try CurlClient.request("GET", "\(baseURL)/_requests", http2: false)
        guard result.status == 200, let count = result.json["requests"] as? Int else { throw TestFailure("bulk server: \(result.text)") }
        return count
    }

    private static let script = """
    import http.server, json, sys, threading, time, urllib.parse
    APP_ID, APP_TOKEN = sys.argv[1], sys.argv[2]
    BLOCK = bytes(range(251)) * 262  # 65,762 bytes, a whole number of patterns: byte i is i % 251
    requests = 0
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def stream(self, size):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            try:
                while sent < size:
                    block = BLOCK[: min(len(BLOCK), size - sent)]
                    self.wfile.write(block)
                    sent += len(block)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_GET(self):
            global requests
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/_requests":
                return self.answer(200, json.dumps({"requests": requests}).encode())
            with lock:
                requests += 1
            if url.path == "/bytes":
                return self.stream(int(query["size"]))
            if url.path == "/stall":
                # Half the body, then nothing (for at most 30 s): a transfer that stalls.
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(2 * len(BLOCK)))
                self.end_headers()
                self.wfile.write(BLOCK)
                self.wfile.flush()
                time.sleep(30)
                return
            if url.path == "/download":
                if (self.headers.get("X-App-Id") == APP_ID and self.headers.get("X-App-Token") == APP_TOKEN
                        and query.get("token") == "fresh"):
                    return self.stream(int(query["size"]))
                return self.answer(401, b'{"code":401,"key":"unauthorized","message":"token expired"}')
            return self.answer(404, b'\(BulkBodyServer.notFoundBody)')

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("port", server.server_address[1], flush=True)
    server.serve_forever()
    """
}

/// What a receiver was handed: bytes, chunks, the first offset that broke the server's pattern,
/// and chunks offered after it said stop. Only counts are kept, never the bytes. Written on the
/// loop, read by the test.
final class PatternCheck: Sendable {
    private struct Seen {
        var bytes = 0
        var chunks = 0
        var firstMismatch: Int?
        var stopped = false
        var chunksAfterStop = 0
    }

    private let seen = Mutex(Seen())
    /// Say stop once this many bytes arrived (nil: never).
    private let stopAfterBytes: Int?

    init(stopAfterBytes: Int? = nil) {
        self.stopAfterBytes = stopAfterBytes
    }

    var bytes: Int { seen.withLock { $0.bytes } }
    var chunks: Int { seen.withLock { $0.chunks } }
    var firstMismatch: Int? { seen.withLock { $0.firstMismatch } }
    var chunksAfterStop: Int { seen.withLock { $0.chunksAfterStop } }

    /// The receiver: true to go on.
    func take(_ chunk: UnsafeRawBufferPointer) -> Bool {
        seen.withLock { seen in
            if seen.stopped { seen.chunksAfterStop += 1 }
            if seen.firstMismatch == nil,
               let index = chunk.indices.first(where: { chunk[$0] != UInt8((seen.bytes + $0) % 251) }) {
                seen.firstMismatch = seen.bytes + index
            }
            seen.bytes += chunk.count
            seen.chunks += 1
            if let stopAfterBytes, seen.bytes >= stopAfterBytes { seen.stopped = true }
            return !seen.stopped
        }
    }
}

extension LoopCurl {
    /// Sends `request` with its 2xx body streamed to `check`; waits for the result.
    func stream(_ request: HTTPClientRequest, to check: PatternCheck) throws -> Result<HTTPClientResponse, HTTPClientError> {
        let results = TransferResults()
        try loop.runAndWait { [curl] in
            _ = try curl.value.start(request, receiveBody: check.take) { results.record(0, $0, elapsedMilliseconds: 0) }
        }
        try waitUntil("\(request.url) is done") { results[0] != nil }
        guard let result = results[0]?.result else { throw TestFailure("no result for \(request.url)") }
        return result
    }
}

@Suite struct StreamedDownloadTests {
    static let mebibyte = 1 << 20

    func request(_ server: BulkBodyServer, _ path: String) -> HTTPClientRequest {
        // Far below the bodies streamed: a body held by the transfer would fail as too large.
        HTTPClientRequest(url: server.baseURL + path, version: .http1, totalTimeoutMilliseconds: 60_000, maxResponseBytes: Self.mebibyte)
    }

    @Test func aLargeBodyReachesTheReceiverChunkByChunkAndIsNotHeld() throws {
        let server = try BulkBodyServer()
        defer { server.stop() }
        let http = try LoopCurl()
        let size = 8 * Self.mebibyte
        let check = PatternCheck()
        let response = try http.stream(request(server, "/bytes?size=\(size)"), to: check).get()
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(check.bytes == size)
        #expect(check.firstMismatch == nil)
        // curl hands over at most a buffer at a time (16 KiB by default): many chunks, none the whole.
        #expect(check.chunks >= size / (128 << 10))
    }

    @Test func aReceiverThatSaysStopEndsTheTransfer() throws {
        let server = try BulkBodyServer()
        defer { server.stop() }
        let http = try LoopCurl()
        let size = 64 * Self.mebibyte
        let check = PatternCheck(stopAfterBytes: Self.mebibyte)
        let result = try http.stream(request(server, "/bytes?size=\(size)"), to: check)
        #expect(result.failure == .aborted)
        #expect(check.bytes >= Self.mebibyte)
        #expect(check.bytes < size)
        #expect(check.chunksAfterStop == 0)
        // The connection is not left in a state that breaks the next transfer.
        #expect(try http.stream(request(server, "/bytes?size=1000"), to: PatternCheck()).get().status == 200)
    }

    @Test func anErrorBodyIsCollectedNotStreamed() throws {
        let server = try BulkBodyServer()
        defer { server.stop() }
        let http = try LoopCurl()
        let check = PatternCheck()
        let response = try http.stream(request(server, "/missing"), to: check).get()
        #expect(response.status == 404)
        #expect(String(decoding: response.body, as: UTF8.self) == BulkBodyServer.notFoundBody)
        #expect(check.chunks == 0)
    }

    /// A download that stops moving ends at its stall limit, long before its total timeout.
    @Test func aStalledTransferEndsAtItsStallLimit() throws {
        let server = try BulkBodyServer()
        defer { server.stop() }
        let http = try LoopCurl()
        var stalled = request(server, "/stall")
        stalled.stallLimit = StallLimit(bytesPerSecond: 1000, seconds: 1)
        let check = PatternCheck()
        let started = Date()
        let result = try http.stream(stalled, to: check)
        #expect(result.failure == .stalled(StallLimit(bytesPerSecond: 1000, seconds: 1)))
        #expect(check.bytes > 0)
        // Well before the 60 s total timeout (curl judges the speed over its own window).
        #expect(Date().timeIntervalSince(started) < 50)
    }

    @Test func withoutAReceiverTheBodyIsCollectedWithinItsLimit() throws {
        let server = try BulkBodyServer()
        defer { server.stop() }
        let http = try LoopCurl()
        #expect(try http.send(request(server, "/bytes?size=\(2 * Self.mebibyte)")).failure == .responseTooLarge(limit: Self.mebibyte))
        #expect(try http.send(request(server, "/bytes?size=1000")).get().body.count == 1000)
    }
}

/// `VoucherifyAPI.downloadExport` against `BulkBodyServer` as the configured Voucherify.
@Suite struct ExportDownloadTests {
    final class Client: @unchecked Sendable {
        let server: BulkBodyServer
        let outcomes = OutcomeLog()
        private let http: LoopCurl
        private let api: LoopBound<VoucherifyAPI>
        private let admission: LoopBound<RecordingAdmission>

        init() throws {
            server = try BulkBodyServer()
            let configuration = try VoucherifyConfiguration(baseURL: server.baseURL, appID: FakeVoucherify.appID,
                                                            appToken: FakeVoucherify.appToken)
            let shared = VoucherifyShared(onCall: { [outcomes] outcome, _ in outcomes.append(outcome) })
            var logger = Logger(label: "export-download-test") { StreamLogHandler.standardError(label: $0) }
            logger.logLevel = .critical
            http = try LoopCurl()
            let loop = http.loop
            let curl = http.curl
            let built = try loop.runAndWait {
                (LoopBound(VoucherifyAPI(curl: curl.value, configuration: configuration, shared: shared, logger: logger), loop: loop),
                 LoopBound(RecordingAdmission(), loop: loop))
            }
            api = built.0
            admission = built.1
        }

        deinit { server.stop() }

        func download(_ url: String, into check: PatternCheck) throws -> Result<Void, ExportDownloadError> {
            let outcome = Mutex<Result<Void, ExportDownloadError>?>(nil)
            try http.loop.runAndWait { [api, admission, loop = http.loop] in
                api.value.downloadExport(url: url, deadline: loop.monotonicMilliseconds + 60_000, admission: admission.value,
                                         receive: check.take) { result in outcome.withLock { $0 = result } }
            }
            try waitUntil("the download of \(url) ends") { outcome.withLock { $0 != nil } }
            guard let result = outcome.withLock({ $0 }) else { throw TestFailure("no result for \(url)") }
            return result
        }

        func admits() throws -> Int {
            try http.loop.runAndWait { [admission] in admission.value.admits }
        }
    }

    @Test func aFreshURLStreamsTheFileWithTheCredentials() throws {
        let client = try Client()
        let size = 3 * (1 << 20) + 17
        let check = PatternCheck()
        try client.download("\(client.server.baseURL)/download?token=fresh&size=\(size)", into: check).get()
        #expect(check.bytes == size)
        #expect(check.firstMismatch == nil)
        #expect(client.outcomes.all == [.ok])
        #expect(try client.admits() == 1)
    }

    @Test func anExpiredTokenIsTokenRejected() throws {
        let client = try Client()
        let check = PatternCheck()
        #expect(try client.download("\(client.server.baseURL)/download?token=stale&size=10", into: check).failure == .tokenRejected(status: 401))
        #expect(check.chunks == 0)
        #expect(client.outcomes.all == [.other])
    }

    @Test func aStoppedReceiverIsReceiverStopped() throws {
        let client = try Client()
        let check = PatternCheck(stopAfterBytes: 1)
        #expect(try client.download("\(client.server.baseURL)/download?token=fresh&size=\(8 << 20)", into: check).failure == .receiverStopped)
    }

    /// Same port, another host name: not an origin this client was configured for, so nothing
    /// is sent there (no request, no admission asked).
    @Test func aURLOnAnotherHostIsNeverFetched() throws {
        let client = try Client()
        let foreign = client.server.baseURL.replacingOccurrences(of: "127.0.0.1", with: "localhost") + "/download?token=fresh&size=10"
        guard case .failure(.refusedURL(let why)) = try client.download(foreign, into: PatternCheck()) else {
            throw TestFailure("a URL on another host must be refused")
        }
        #expect(why.contains("localhost"))
        #expect(try client.server.requestCount() == 0)
        #expect(try client.admits() == 0)
        #expect(client.outcomes.all.isEmpty)
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
