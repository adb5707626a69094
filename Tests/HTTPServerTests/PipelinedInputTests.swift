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
        let marker = try makeTemporaryDirectory() + "/sent"
        defer { try? FileManager.default.removeItem(atPath: (marker as NSString).deletingLastPathComponent) }
        // 100 requests of about 1.07 KB each after the held one: about 107 KB, all sent at once.
        let count = 100
        let client = try ChildTool("/usr/bin/python3", ["-c", burstClient, String(port), String(count), marker,
                                                        secure?.a.certificateFile ?? ""])
        // Everything is sent (what the server has not read waits in the kernel's buffers) while
        // the first request is held: the rest can only be read once its exchange is over.
        try waitFor("the client has sent every request and the first is held") {
            FileManager.default.fileExists(atPath: marker) && fixture.heldRequests == 1
        }
        try fixture.releaseHeld()
        let result = try client.wait()
        #expect(result.status == 0, "\(result.errors)")
        let echoes = (0..<count).map { "200 http1_1 POST /echo n=\($0) - 1000\n" }.joined()
        // Over TLS the server's close after `connection: close` carries close_notify: Python's
        // ssl module sees a clean end of stream, not a truncation.
        #expect(result.output == "200 released\n" + echoes + "EOF\n")
    }
}

/// Connects to 127.0.0.1:argv[1] (TLS with ALPN http/1.1 trusting argv[4], unless empty), sends
/// a held request then argv[2] POSTs with 1000-byte bodies in one burst, the last saying
/// `connection: close`, creates the file argv[3], then reads every answer with http.client's
/// parser (one buffered reader for all) and prints status and body of each, then how the
/// stream ended. Every socket operation gives up after 20 s.
private let burstClient = #"""
import http.client, socket, ssl, sys
port, count, marker, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=20)
if cafile:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    s = context.wrap_socket(s, server_hostname="localhost")
requests = [b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"]
for n in range(count):
    close = b"Connection: close\r\n" if n == count - 1 else b""
    requests.append(b"POST /echo?n=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n%s\r\n" % (n, close) + b"x" * 1000)
s.sendall(b"".join(requests))
open(marker, "w").close()
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
