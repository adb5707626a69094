import EventLoop
import Foundation
import Glibc
import Logging
import Testing
import TestSupport
@testable import HTTPServer

/// One loop thread with an HTTP server speaking TLS, its certificates in a temporary directory:
/// `certificateFile`/`keyFile` are what the server reads (and re-reads on `reload`), `a` and `b`
/// two distinct self-signed certificates to copy there.
final class TLSServerFixture: HoldingFixture, @unchecked Sendable {
    private let running: ServerOnLoop
    var loop: Loop { running.loop }
    let handler = ScriptedHandler()
    let directory: String
    let a: TestCertificate
    let b: TestCertificate
    let certificateFile: String
    let keyFile: String
    let tls: TLSContextHolder
    var server: HTTPServer? { running.server }
    var port: Int { running.port }

    init(handshakeTimeoutSeconds: Int = 10) throws {
        directory = try makeTemporaryDirectory()
        a = try TestCertificate(in: directory, name: "a")
        b = try TestCertificate(in: directory, name: "b")
        certificateFile = directory + "/server-cert.pem"
        keyFile = directory + "/server-key.pem"
        try FileManager.default.copyItem(atPath: a.certificateFile, toPath: certificateFile)
        try FileManager.default.copyItem(atPath: a.keyFile, toPath: keyFile)
        tls = try TLSContextHolder(certificateFile: certificateFile, keyFile: keyFile)
        var configuration = HTTPServerConfiguration(listen: "127.0.0.1:0")
        configuration.tls = tls
        configuration.tlsHandshakeTimeoutSeconds = handshakeTimeoutSeconds
        running = try ServerOnLoop(handler: handler, configuration: configuration)
    }

    deinit {
        running.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var baseURL: String { "https://127.0.0.1:\(port)" }

    /// Puts `certificate`'s files where the server reads them.
    func install(_ certificate: TestCertificate) throws {
        for (from, to) in [(certificate.certificateFile, certificateFile), (certificate.keyFile, keyFile)] {
            try Data(contentsOf: URL(fileURLWithPath: from)).write(to: URL(fileURLWithPath: to), options: .atomic)
        }
    }

    /// curl trusting only `certificate` (verification on, as in production).
    func curl(_ arguments: [String], trusting certificate: TestCertificate) throws -> (status: Int32, output: String, errors: String) {
        try runTool("/usr/bin/curl", ["-sS", "--max-time", "20", "--cacert", certificate.certificateFile] + arguments)
    }

    var openConnections: Int {
        (try? loop.runAndWait { [self] in server?.openConnections ?? 0 }) ?? -1
    }
}

@Suite(.serialized) struct TLSServerTests {
    @Test func http2IsNegotiatedByALPN() throws {
        let fixture = try TLSServerFixture()
        let result = try fixture.curl(["--http2", "-w", "\n%{http_version}", fixture.baseURL + "/plain"], trusting: fixture.a)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output == "plain\n2")
    }

    @Test func http1IsNegotiatedByALPN() throws {
        let fixture = try TLSServerFixture()
        let result = try fixture.curl(["-v", "--http1.1", "-w", "\n%{http_version} %{http_code}", fixture.baseURL + "/echo?x=1"],
                                      trusting: fixture.a)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("ALPN: server accepted http/1.1"), "\(result.errors)")
        // Served by the HTTP/1.1 connection type, as in cleartext.
        #expect(result.output == "http1_1 GET /echo x=1 - 0\n1.1 200")
    }

    @Test func tls12IsAcceptedAndTLS11Refused() throws {
        let fixture = try TLSServerFixture()
        let tls12 = try fixture.curl(["--tlsv1.2", "--tls-max", "1.2", "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                                      fixture.baseURL + "/plain"], trusting: fixture.a)
        #expect(tls12.status == 0, "\(tls12.errors)")
        #expect(tls12.output == "2")
        // The client's own security level would refuse TLS 1.1 before the server could: lower it,
        // so that the refusal seen is the server's.
        let tls11 = try fixture.curl(["--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0", "-o", "/dev/null",
                                      fixture.baseURL + "/plain"], trusting: fixture.a)
        #expect(tls11.status != 0)
        #expect(tls11.errors.contains("protocol version"), "\(tls11.errors)")
    }

    @Test func aReloadServesTheNewCertificateToNewConnectionsAndKeepsOpenOnes() throws {
        let fixture = try TLSServerFixture()
        // One curl, one connection: a request the handler holds, then a second request that can
        // only succeed on that same connection, since a new one would present certificate B,
        // which this curl does not trust.
        let held = try ChildTool("/usr/bin/curl", ["-sS", "--max-time", "20", "--http2", "--cacert", fixture.a.certificateFile,
                                                   "-w", " %{http_version} %{num_connects}\n",
                                                   fixture.baseURL + "/hold", fixture.baseURL + "/plain"])
        try waitFor("the handler holds the request") { fixture.heldRequests == 1 }

        try fixture.install(fixture.b)
        try fixture.tls.reload()
        let withB = try fixture.curl(["--http2", fixture.baseURL + "/plain"], trusting: fixture.b)
        #expect(withB.status == 0, "\(withB.errors)")
        #expect(withB.output == "plain")
        let withA = try fixture.curl(["--http2", fixture.baseURL + "/plain"], trusting: fixture.a)
        #expect(withA.status != 0, "a new connection should present certificate B")

        try fixture.releaseHeld()
        let result = try held.wait()
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output == "released 2 1\nplain 2 0\n")
    }

    @Test func aBadFileOnReloadKeepsTheOldCertificate() throws {
        let fixture = try TLSServerFixture()
        try Data("not a key\n".utf8).write(to: URL(fileURLWithPath: fixture.keyFile))
        #expect { try fixture.tls.reload() } throws: { error in
            guard case .key(let path, _)? = error as? TLSError else { return false }
            return path == fixture.keyFile
        }
        // A key that is well-formed but belongs to another certificate is refused too.
        try Data(contentsOf: URL(fileURLWithPath: fixture.b.keyFile)).write(to: URL(fileURLWithPath: fixture.keyFile))
        #expect { try fixture.tls.reload() } throws: { error in
            guard case .key(_, let reason)? = error as? TLSError else { return false }
            return reason.contains("mismatch")
        }
        let result = try fixture.curl(["--http2", fixture.baseURL + "/plain"], trusting: fixture.a)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output == "plain")
    }

    @Test func aFailedOrStalledHandshakeClosesTheSocketAndTheServerGoesOn() throws {
        // A deadline long enough that the test's polls see both sockets accepted before it passes,
        // even on a slow machine.
        let fixture = try TLSServerFixture(handshakeTimeoutSeconds: 3)
        let silent = try connectedSocket(port: fixture.port)
        defer { close(silent) }
        let garbage = try connectedSocket(port: fixture.port)
        defer { close(garbage) }
        // Both accepted before anything is judged: a count of 0 before the accepts proves nothing.
        try waitFor("the server has accepted both sockets") { fixture.openConnections == 2 }
        let request = Array("GET / HTTP/1.1\r\nhost: x\r\n\r\n".utf8)
        #expect(write(garbage, request, request.count) == request.count)
        // The cleartext request fails its handshake at once; the silent peer meets the deadline.
        try waitFor("both sockets are closed by the server") { fixture.openConnections == 0 }
        #expect(try readsToEnd(garbage), "the server should have closed the socket that sent garbage")
        #expect(try readsToEnd(silent), "the server should have closed the silent socket")
        let result = try fixture.curl(["--http2", fixture.baseURL + "/plain"], trusting: fixture.a)
        #expect(result.status == 0, "\(result.errors)")
    }

    @Test func aHandshakeTrickledInIsCutOffAtTheDeadline() throws {
        // 3 s, not 1: the poll below must see the socket accepted before the deadline passes.
        let fixture = try TLSServerFixture(handshakeTimeoutSeconds: 3)
        let client = try connectedSocket(port: fixture.port)
        defer { close(client) }
        try waitFor("the server has accepted the socket") { fixture.openConnections == 1 }
        let start = ContinuousClock.now
        // The start of a ClientHello record announcing 512 bytes, one byte every 300 ms: never
        // quiet for the 3 s an inactivity timeout would allow, never finished either. Bounded:
        // 40 bytes take 12 s, far past the deadline.
        let hello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03] + Array(repeating: 0x2A, count: 29)
        var closedAfter: Duration?
        for byte in hello {
            if fixture.openConnections == 0 {
                closedAfter = ContinuousClock.now - start
                break
            }
            // Once the server has closed, a write may fail (SIGPIPE is ignored): that is the point.
            _ = withUnsafePointer(to: byte) { write(client, $0, 1) }
            usleep(300_000)
        }
        let elapsed = try #require(closedAfter, "the trickling handshake outlived its 3 s deadline")
        #expect(elapsed < .seconds(6), "closed only after \(elapsed)")
        #expect(try readsToEnd(client))
    }
}

/// Whether reading `fd` ends (EOF or a reset) within 10 s: the server closed it. Discards what
/// it reads (an alert, say).
private func readsToEnd(_ fd: Int32) throws -> Bool {
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
        throw ToolFailure("SO_RCVTIMEO: \(String(cString: strerror(errno)))")
    }
    var buffer = [UInt8](repeating: 0, count: 4096)
    // Bounded: each read either returns data, ends, or times out after 10 s.
    for _ in 0..<64 {
        let count = read(fd, &buffer, buffer.count)
        if count > 0 { continue }
        // EAGAIN: the receive timeout passed with the socket still open.
        return count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
    }
    return false
}

/// A TCP connection to 127.0.0.1:`port`.
private func connectedSocket(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ToolFailure("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        close(fd)
        throw ToolFailure("connect: \(String(cString: strerror(errno)))")
    }
    return fd
}

/// A tool started now and waited for later (`runTool` waits at once).
final class ChildTool {
    private let process = Process()
    private let output = Pipe()
    private let errors = Pipe()

    init(_ path: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// A test that failed before `wait` must not leave it running.
    deinit {
        if process.isRunning { process.terminate() }
    }

    /// Its output is a few KB at most: the pipes cannot fill up before it ends.
    func wait() throws -> (status: Int32, output: String, errors: String) {
        process.waitUntilExit()
        return (process.terminationStatus,
                String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }
}
