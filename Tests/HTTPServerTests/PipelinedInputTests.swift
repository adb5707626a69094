import Foundation
import Testing
import TestSupport
@testable import HTTPServer

/// HTTP/1.1 input beyond what a connection holds unparsed (64 KB) while a request is with the
/// application: reading pauses, and must resume on the bytes already buffered (over TLS, on
/// those OpenSSL has already decrypted too) once the exchange is over.
@Suite(.serialized) struct PipelinedInputTests {
    @Test(arguments: [false, true])
    func pipelinedRequestsOverTheInputLimitAreAllAnswered(tls: Bool) throws {
        let secure = tls ? try TLSServerFixture() : nil
        let cleartext = tls ? nil : try ServerFixture()
        let fixture: HoldingFixture = try #require(secure ?? cleartext)
        let port = try #require(secure?.port ?? cleartext?.port)
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let go = directory + "/go"
        let sent = directory + "/sent"
        let count = 62
        let client = try ChildTool("/usr/bin/python3", ["-c", burstClient, String(port), String(count), go, sent,
                                                        secure?.a.certificateFile ?? ""])
        // The held request is parsed (and taken from the input) before the burst is sent, so the
        // burst's TLS records line up as burstClient says.
        try waitFor("the first request is held") { fixture.heldRequests == 1 }
        FileManager.default.createFile(atPath: go, contents: nil)
        // What the server has not read waits in the kernel's buffers: the burst is out while the
        // first request is still held, and the rest can only be read once its exchange is over.
        try waitFor("the client has sent every request") { FileManager.default.fileExists(atPath: sent) }
        try fixture.releaseHeld()
        let result = try client.wait()
        #expect(result.status == 0, "\(result.errors)")
        let echoes = (0..<count).map { "200 http1_1 POST /echo n=\(String(1000 + $0).dropFirst()) - 1000\n" }.joined()
        // Over TLS the server's close after `connection: close` carries close_notify: Python's
        // ssl module, told not to suppress ragged EOFs, sees a clean end of stream, not a truncation.
        #expect(result.output == "200 released\n" + echoes + "EOF\n")
    }
}

/// Connects to 127.0.0.1:argv[1] (TLS with ALPN http/1.1 trusting argv[5], unless empty) and
/// sends a request the handler holds. Once the file argv[3] exists, sends argv[2] POSTs with
/// 1000-byte bodies (1060 bytes each, the last 19 more for `connection: close`: 65,739 bytes for
/// 62) in two writes, of 1000 bytes and the rest, then creates the file argv[4]. TLS records of
/// 16 KB then start at 1000 + 16384k, so a reader stopping at 64 KB of input stops inside the
/// last record, with nothing left on the socket to wake it. Then reads every answer with
/// http.client's parser (one buffered reader for all), printing status and body of each, then
/// how the stream ended. Waits and socket operations give up after 20 s.
private let burstClient = #"""
import http.client, os, socket, ssl, sys, time
port, count, go, sent, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = socket.create_connection(("127.0.0.1", port), timeout=20)
if cafile:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    s = context.wrap_socket(s, server_hostname="localhost", suppress_ragged_eofs=False)
s.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
deadline = time.monotonic() + 20
while not os.path.exists(go):
    if time.monotonic() > deadline: sys.exit("never told to go on")
    time.sleep(0.01)
burst = b""
for n in range(count):
    close = b"Connection: close\r\n" if n == count - 1 else b""
    burst += b"POST /echo?n=%03d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n%s\r\n" % (n, close) + b"x" * 1000
s.sendall(burst[:1000])
s.sendall(burst[1000:])
open(sent, "w").close()
reader = s.makefile("rb")
class Shared:
    def __getattr__(self, name): return getattr(reader, name)
    def close(self): pass
class Sock:
    def makefile(self, *args, **kwargs): return Shared()
for _ in range(count + 1):
    r = http.client.HTTPResponse(Sock())
    r.begin()
    print(r.status, r.read().decode())
try:
    print("EOF" if reader.read(1) == b"" else "OPEN")
except ssl.SSLEOFError:
    print("EOF without close_notify")
"""#
