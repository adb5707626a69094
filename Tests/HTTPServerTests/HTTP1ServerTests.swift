import Foundation
import Glibc
import Testing
@testable import HTTPServer

/// HTTP/1.1 on the HTTP/2 port, driven by real clients: curl, and Python's stdlib for what curl
/// will not do (pipelining, malformed requests, reading raw answers). ScriptedHandler allows
/// 1024-byte bodies and answers a broken limit with 413.
@Suite(.serialized) struct HTTP1ServerTests {
    @Test func keepAliveServesTwoRequestsOnOneConnection() throws {
        let fixture = try ServerFixture()
        let base = "http://127.0.0.1:\(fixture.port)"
        let output = try run("/usr/bin/curl", ["-sS", "--http1.1", "-H", "x-test: hello", "-w", " %{http_code} %{http_version} %{num_connects}\n",
                                               base + "/echo?a=1&b=2", base + "/echo"])
        // One connection for both: the second transfer reused it (num_connects 0).
        #expect(output == "http1_1 GET /echo a=1&b=2 hello 0 200 1.1 1\nhttp1_1 GET /echo - hello 0 200 1.1 0\n")
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let fixture = try ServerFixture()
        // The first request is held by the handler: the second, already sent, must wait for it.
        let client = try start("/usr/bin/python3", ["-c", pythonReader, String(fixture.port),
                                                    "GET /hold HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /echo?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                                    "3"])
        try waitUntil { try fixture.loop.runAndWait { fixture.handler.held.count == 1 } }
        try fixture.loop.runAndWait { fixture.handler.held[0].respond(HTTPResponse(status: 202, body: Array("first".utf8))) }
        let output = try client.finish()
        #expect(output == "202 first\n200 http1_1 POST /echo n=2 - 3\n200 http1_1 GET /echo n=3 - 0\nEOF\n")
    }

    @Test func aMalformedRequestGets400NamingTheParserError() throws {
        let fixture = try ServerFixture()
        let answer = try rawExchange(fixture, "GET / FTP/1.1\r\nHost: x\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(answer.contains("connection: close\r\n"))
        #expect(answer.contains("HPE_INVALID_CONSTANT"))
        // The server closed after its answer (rawExchange reads to EOF); the port still serves.
        try waitUntil { try fixture.loop.runAndWait { fixture.server!.openConnections == 0 } }
        #expect(try fixture.get("/").status == 200)
    }

    @Test func headersOverTheLimitAreRejected() throws {
        let fixture = try ServerFixture()
        let status = try run("/usr/bin/curl", ["-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}",
                                               "-H", "x-padding: " + String(repeating: "a", count: 20_000), "http://127.0.0.1:\(fixture.port)/echo"])
        #expect(status == "413")
    }

    @Test func aLimitBrokenInTheHeadersIsAnsweredForTheRequestsMethodAndPath() throws {
        let fixture = try ServerFixture()
        let padding = "x-padding: " + String(repeating: "a", count: 20_000) + "\r\n"
        // The path's own limit answer, though the headers never completed.
        let get = try rawExchange(fixture, "GET /echo?q=1 HTTP/1.1\r\nHost: x\r\n" + padding + "\r\n")
        #expect(get.hasPrefix("HTTP/1.1 413 "))
        #expect(get.hasSuffix("\r\n\r\nlimit GET /echo"))
        // HEAD: the length of that answer, and no body.
        let head = try rawExchange(fixture, "HEAD /echo HTTP/1.1\r\nHost: x\r\n" + padding + "\r\n")
        #expect(head.hasPrefix("HTTP/1.1 413 "))
        #expect(head.contains("content-length: \("limit HEAD /echo".utf8.count)\r\n"))
        #expect(head.hasSuffix("connection: close\r\n\r\n"))
    }

    @Test(arguments: [false, true])
    func bodiesOverTheLimitAreRejected(chunked: Bool) throws {
        let fixture = try ServerFixture()
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("h1-body-\(UUID().uuidString)")
        try Data(repeating: 0x61, count: 5000).write(to: body)
        defer { try? FileManager.default.removeItem(at: body) }
        let status = try run("/usr/bin/curl", ["-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@" + body.path]
            + (chunked ? ["-H", "transfer-encoding: chunked"] : []) + ["http://127.0.0.1:\(fixture.port)/echo"])
        #expect(status == "413")
    }

    @Test func aChunkedBodyWithinTheLimitArrivesWhole() throws {
        let fixture = try ServerFixture()
        let output = try run("/usr/bin/curl", ["-sS", "--http1.1", "-H", "transfer-encoding: chunked", "--data-binary", String(repeating: "b", count: 900),
                                               "http://127.0.0.1:\(fixture.port)/echo"])
        #expect(output == "http1_1 POST /echo - - 900")
    }

    @Test func expectContinueGets100OnlyWithinTheLimit() throws {
        let fixture = try ServerFixture()
        let within = try rawExchange(fixture, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
                                     then: "body")
        #expect(within.hasPrefix("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"))
        #expect(within.hasSuffix("http1_1 POST /echo - - 4"))
        let over = try rawExchange(fixture, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        #expect(over.hasPrefix("HTTP/1.1 413 "))
        #expect(over.contains("connection: close\r\n"))
    }

    @Test func headAnswersCarryTheLengthButNoBody() throws {
        let fixture = try ServerFixture()
        let answer = try rawExchange(fixture, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let length = "http1_1 HEAD /echo - - 0".utf8.count
        // The second answer follows the first's blank line directly: no body came between them.
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: \(length)\r\n\r\nHTTP/1.1 200 OK\r\n"))
        #expect(answer.hasSuffix("content-length: 5\r\nconnection: close\r\n\r\nplain"))
    }

    @Test func http10ClosesUnlessAskedToKeepAlive() throws {
        let fixture = try ServerFixture()
        let plain = try rawExchange(fixture, "GET /echo HTTP/1.0\r\n\r\n")
        #expect(plain.contains("connection: close\r\n"))
        #expect(plain.hasSuffix("http1_1 GET /echo - - 0"))
        let kept = try rawExchange(fixture, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo HTTP/1.0\r\n\r\n")
        #expect(kept.hasPrefix("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\nplainHTTP/1.1 200 OK\r\n"))
        #expect(kept.hasSuffix("http1_1 GET /echo - - 0"))
    }

    @Test func http2StillWorksOnTheSamePort() throws {
        let fixture = try ServerFixture()
        #expect(try run("/usr/bin/curl", ["-sS", "--http1.1", "http://127.0.0.1:\(fixture.port)/echo"]) == "http1_1 GET /echo - - 0")
        let h2 = try fixture.get("/echo")
        #expect(h2.httpVersion == 2)
        #expect(String(decoding: h2.body, as: UTF8.self) == "http2 GET /echo - - 0")
        // curl's own upgrade offer (Upgrade: h2c) is served as plain HTTP/1.1.
        #expect(try run("/usr/bin/curl", ["-sS", "--http2", "-w", " %{http_version}", "http://127.0.0.1:\(fixture.port)/echo"])
            == "http1_1 GET /echo - - 0 1.1")
    }

    @Test func anIdleKeepAliveConnectionIsClosed() throws {
        let fixture = try ServerFixture(idleTimeoutSeconds: 1)
        // Kept alive after its answer, the connection ends only by the idle timeout (rawExchange
        // reads until the server closes).
        let answer = try rawExchange(fixture, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(!answer.contains("connection: close"))
        try waitUntil { try fixture.loop.runAndWait { fixture.server!.openConnections == 0 } }
    }

    @Test func aPeerThatLeavesCancelsTheRequestInFlight() throws {
        let fixture = try ServerFixture()
        let client = try connectTo(fixture.port)
        let request = Array("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) }
        try waitUntil { try fixture.loop.runAndWait { fixture.handler.held.count == 1 } }
        Glibc.close(client)
        try waitUntil { try fixture.loop.runAndWait { fixture.handler.held[0].isCancelled } }
        let late = try fixture.loop.runAndWait { () -> Bool in
            let writer = fixture.handler.held[0]
            writer.respond(HTTPResponse(status: 200))
            return !writer.hasResponded
        }
        #expect(late)
        #expect(try fixture.loop.runAndWait { fixture.server!.openConnections } == 0)
    }

    @Test func drainFinishesTheRequestInFlightWithConnectionClose() throws {
        let fixture = try ServerFixture()
        let client = try start("/usr/bin/python3", ["-c", pythonReader, String(fixture.port), "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n", "1", "headers"])
        try waitUntil { try fixture.loop.runAndWait { fixture.handler.held.count == 1 } }
        let drained = Drained()
        try fixture.loop.runAndWait {
            fixture.server!.drain { drained.done = true }
            fixture.handler.held[0].respond(HTTPResponse(status: 200, body: Array("last".utf8)))
        }
        #expect(try client.finish() == "200 last connection=close\nEOF\n")
        try waitUntil { try fixture.loop.runAndWait { drained.done } }
    }

    @Test func drainLetsARequestStillArrivingFinishWithConnectionClose() throws {
        let fixture = try ServerFixture()
        let client = try connectTo(fixture.port)
        defer { Glibc.close(client) }
        // The interim answer shows the server has parsed the start of the request: a drain any
        // earlier would meet an idle connection, which it rightly closes at once.
        try sendAll(client, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n")
        #expect(try read(client, until: "\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n")
        try sendAll(client, "abc")
        let drained = Drained()
        try fixture.loop.runAndWait { fixture.server!.drain { drained.done = true } }
        try sendAll(client, "def")
        let answer = try read(client)
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer.contains("connection: close\r\n"))
        #expect(answer.hasSuffix("http1_1 POST /echo - - 6"))
        // The client's end too, which the server lingers for, so the drain ends without its timeout.
        #expect(shutdown(client, Int32(SHUT_WR)) == 0)
        try waitUntil { try fixture.loop.runAndWait { drained.done } }
    }

    @Test func aClientThatHalfClosesAfterItsRequestStillGetsTheWholeAnswer() throws {
        let fixture = try ServerFixture()
        // HTTP/1.0 as `nc -N` sends it: the request, then the client's end of the stream at once.
        // The 1 MiB answer is still being written when the server sees that EOF.
        let script = """
        import socket, sys
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
        s.sendall(b"GET /big HTTP/1.0\\r\\n\\r\\n")
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            out += chunk
        head, _, body = out.partition(b"\\r\\n\\r\\n")
        print(head.split(b"\\r\\n")[0].decode(), len(body), b"connection: close" in head)
        """
        #expect(try run("/usr/bin/python3", ["-c", script, String(fixture.port)]) == "HTTP/1.1 200 OK \(1 << 20) True\n")
    }
}

private final class Drained: @unchecked Sendable { var done = false }

/// Sends argv[2] on one socket to 127.0.0.1:argv[1], then reads argv[3] answers with
/// http.client's parser (one buffered reader for all, so nothing of a later answer is lost),
/// printing status and body (and the connection header when argv[4] says so), then whether the
/// server closed.
private let pythonReader = #"""
import http.client, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(sys.argv[2].encode())
reader = s.makefile("rb")
class Shared:
    def __getattr__(self, name): return getattr(reader, name)
    def close(self): pass
class Sock:
    def makefile(self, *args, **kwargs): return Shared()
for _ in range(int(sys.argv[3])):
    r = http.client.HTTPResponse(Sock())
    r.begin()
    extra = " connection=" + str(r.getheader("connection")) if len(sys.argv) > 4 else ""
    print(r.status, r.read().decode() + extra)
print("EOF" if reader.read(1) == b"" else "OPEN")
"""#

/// Sends `request` (then `then`, after the first answer bytes arrive) and reads until the server
/// closes: the raw answer, as text.
private func rawExchange(_ fixture: ServerFixture, _ request: String, then more: String? = nil) throws -> String {
    var script = """
    import socket, sys
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    s.sendall(sys.argv[2].encode())
    out = b""
    """
    if more != nil { script += "\nout = s.recv(65536)\ns.sendall(sys.argv[3].encode())" }
    script += "\nwhile True:\n    chunk = s.recv(65536)\n    if not chunk: break\n    out += chunk\nsys.stdout.write(out.decode())\n"
    return try run("/usr/bin/python3", ["-c", script, String(fixture.port), request] + (more.map { [$0] } ?? []))
}

private func connectTo(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, rc == 0 else { throw ClientFailure("connect: \(String(cString: strerror(errno)))") }
    return fd
}

/// Writes all of `text` to `fd`.
private func sendAll(_ fd: Int32, _ text: String) throws {
    let bytes = Array(text.utf8)
    var sent = 0
    // Bounded: every pass sends something or throws.
    while sent < bytes.count {
        let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { throw ClientFailure("send: \(String(cString: strerror(errno)))") }
        sent += count
    }
}

/// Reads from `fd` until the peer ends the stream, or until what was read ends with `suffix`:
/// the bytes, as text. Each read waits at most 20 s; more than 1 MiB is a failure.
private func read(_ fd: Int32, until suffix: String? = nil) throws -> String {
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
        throw ClientFailure("SO_RCVTIMEO: \(String(cString: strerror(errno)))")
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while received.count < 1 << 20 {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw ClientFailure("recv: \(String(cString: strerror(errno)))") }
        if count == 0 { return String(decoding: received, as: UTF8.self) }
        received += buffer[..<count]
        if let suffix, received.count >= suffix.utf8.count, received.suffix(suffix.utf8.count).elementsEqual(suffix.utf8) {
            return String(decoding: received, as: UTF8.self)
        }
    }
    throw ClientFailure("more than 1 MiB read")
}

/// Polls `condition` until it holds; 30 s is only a guard against a hang.
func waitUntil(_ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw ClientFailure("condition not met within 30 s") }
        usleep(2_000)
    }
}

struct ClientFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A client process running while the test drives the server.
struct RunningClient {
    let process: Process
    let output: Pipe

    /// Waits for the process (which bounds itself with its own timeouts) and returns its stdout.
    func finish() throws -> String {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ClientFailure("\(process.executableURL?.path ?? "?") exited with \(process.terminationStatus): \(String(decoding: data, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

func start(_ executable: String, _ arguments: [String]) throws -> RunningClient {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    return RunningClient(process: process, output: output)
}

/// Runs a client to completion (a nonzero exit throws, with its output); its stdout.
func run(_ executable: String, _ arguments: [String]) throws -> String {
    // curl bounds itself too: no transfer may take longer than 20 s.
    try start(executable, executable.hasSuffix("curl") ? ["--max-time", "20"] + arguments : arguments).finish()
}
