import Foundation
import Testing
import TestSupport

/// The service called by the clients strangers will use: grpcio with stubs generated from
/// proto-json (binary gRPC), the standard grpc.health.v1 client as a Kubernetes `grpc` probe calls
/// it, the official Connect Python client on its default HTTP/1.1 transport (and on HTTP/2),
/// Python's urllib and plain curl. The Python checks are scripts in Tests/clients/; each prints
/// what it checked and exits non-zero at the first failure, and runs with the venv scripts/test.sh
/// builds.
@Suite(.serialized) struct ClientInteropTests {
    @Test func grpcioClient() throws {
        let stack = try InteropStack()
        // A read that outlasts every deadline the script sets (it is answered well before the fake stops).
        try stack.service.fake.putMember(InteropStack.slowMember, buckets: buckets(1))
        try stack.service.fake.hold(member: InteropStack.slowMember, holdMilliseconds: 10_000)
        try stack.expectScriptPasses("grpc_client_checks.py", stack.memberArguments() + ["--slow-member", InteropStack.slowMember])
    }

    /// grpcio enforces a deadline itself, so only a raw call shows the server honours
    /// `grpc-timeout`: with a 10 s client limit, a 300 ms `grpc-timeout` on a read held for 10 s
    /// must come back as DEADLINE_EXCEEDED from the server (else the default 15 s deadline would
    /// outlast the client).
    @Test func theServerEndsAGRPCCallAtItsGrpcTimeout() throws {
        let stack = try InteropStack()
        try stack.service.fake.putMember(InteropStack.slowMember, buckets: buckets(1))
        try stack.service.fake.hold(member: InteropStack.slowMember, holdMilliseconds: 10_000)
        let frame = grpcGetMemberExpirationFrame(campaign: FakeVoucherify.campaignID, member: InteropStack.slowMember)
        let started = Date()
        let answer = try CurlClient.request("POST", stack.service.baseURL + "/pointsexpiry.v1.PointsExpiryService/GetMemberExpiration",
                                            body: frame, headers: ["content-type: application/grpc", "te: trailers", "grpc-timeout: 300m"],
                                            timeoutSeconds: 10)
        #expect(answer.status == 200)
        #expect(answer.headers["grpc-status"] == "4", "\(answer.headers)")
        #expect(Date().timeIntervalSince(started) < 9)
    }

    @Test func grpcHealthClientAsAKubernetesProbe() throws {
        let stack = try InteropStack()
        try stack.expectScriptPasses("health_probe.py", ["--address", stack.address, "--timeout", "5"])
    }

    /// grpcio over TLS with `ssl_channel_credentials` trusting the service's own certificate
    /// (generated here): ALPN h2, the health probe as Kubernetes would run it against a TLS port.
    @Test func grpcioOverTLS() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate(in: directory, name: "service")
        let service = try ServiceUnderTest(environment: ["TLS_CERT_FILE": certificate.certificateFile, "TLS_KEY_FILE": certificate.keyFile],
                                           waitUntilReady: false)
        try waitUntil("every worker of the service is ready") { service.app.allWorkersReady() }
        try PythonClients.expectScriptPasses("health_probe.py", ["--address", "127.0.0.1:\(service.app.port)",
                                                                 "--ca-cert", certificate.certificateFile, "--timeout", "5"])
    }

    @Test(arguments: ["json", "proto"]) func connectPythonClientOnItsDefaultHTTP1Transport(codec: String) throws {
        let stack = try InteropStack()
        try stack.expectScriptPasses("connect_client_checks.py", stack.memberArguments() + ["--codec", codec])
    }

    @Test(arguments: ["json", "proto"]) func connectPythonClientOverHTTP2(codec: String) throws {
        let stack = try InteropStack()
        try stack.expectScriptPasses("connect_client_checks.py", stack.memberArguments() + ["--codec", codec, "--http2"])
    }

    @Test func pythonURLLibOverHTTP1() throws {
        let stack = try InteropStack()
        try stack.expectScriptPasses("http1_checks.py", stack.memberArguments())
    }

    @Test func plainCurlScrapesMetricsOverHTTP1() throws {
        let stack = try InteropStack()
        let curl = try ClientRun("/usr/bin/curl", ["-sS", "--max-time", "10", "-w", "\n%{http_code} HTTP/%{http_version}", stack.service.baseURL + "/metrics"])
        #expect(curl.status == 0, "curl failed:\n\(curl.output)")
        #expect(curl.output.hasSuffix("\n200 HTTP/1.1"), "curl http://…/metrics did not get 200 over HTTP/1.1:\n\(curl.output)")
        #expect(curl.output.contains("# TYPE "), "no Prometheus text:\n\(curl.output)")
    }
}

/// A service with its redis-server and fake Voucherify, and one cached member for a script to ask about.
private struct InteropStack {
    static let member = "INTEROP-1"
    static let unknownMember = "INTEROP-NOBODY"
    static let slowMember = "INTEROP-SLOW"

    let service: ServiceUnderTest
    /// The service's Connect JSON answer for `member`, read over HTTP/2 (what works without the
    /// other protocols): what every client must see, field for field.
    let expectedJSON: String

    init() throws {
        // The client scripts also ask GetCampaignExpiration, whose first export takes the fake this long.
        service = try ServiceUnderTest(fakeArguments: ["--export-delay-ms", "200"])
        try service.fake.putMember(Self.member, buckets: buckets(2, points: 40, neverExpiring: 1))
        let reference = try service.get(member: Self.member)
        guard reference.status == 200 else { throw TestFailure("reference call: \(reference.status) \(reference.text)") }
        expectedJSON = reference.text
        try service.waitUntilCached(member: Self.member)
    }

    var address: String { "127.0.0.1:\(service.app.port)" }

    func memberArguments() -> [String] {
        ["--address", address, "--campaign", FakeVoucherify.campaignID, "--member", Self.member,
         "--unknown-member", Self.unknownMember, "--expected-json", expectedJSON]
    }

    func expectScriptPasses(_ script: String, _ arguments: [String]) throws {
        try PythonClients.expectScriptPasses(script, arguments)
    }
}

/// The client scripts and the venv (with grpcio, connectrpc, …) that scripts/test.sh builds for them.
private enum PythonClients {
    /// Runs Tests/clients/`script` with the venv's Python; passes when it exits 0, and shows its
    /// output either way it fails.
    static func expectScriptPasses(_ script: String, _ arguments: [String]) throws {
        let python = venvPython
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestFailure("\(python) is missing: run scripts/test.sh, which creates the Python clients' venv")
        }
        let run = try ClientRun(python, [scripts.appendingPathComponent(script).path] + arguments,
                                environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        #expect(run.status == 0, "\(script) failed (exit \(run.status)):\n\(run.output)")
    }

    static let scripts = PackageFiles.url("Tests/clients")
    static let venvPython = PackageFiles.url(".build-py/venv/bin/python3").path
}

/// One client program run to its end (bounded), with its exit status and its output (stdout and stderr together).
struct ClientRun {
    static let timeout: TimeInterval = 120
    let status: Int32
    let output: String

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let child = try ChildProcess(executable, arguments, environment: environment)
        do {
            status = try child.waitForExit(timeout: Self.timeout)
        } catch {
            child.stop()
            throw TestFailure("\(executable) did not finish within \(Int(Self.timeout)) s; output:\n\(child.outputText)")
        }
        output = child.outputText
    }
}
