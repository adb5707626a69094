import Foundation
import Testing

/// LISTEN is bound once, without SO_REUSEPORT: an address already taken, by another service or a
/// foreign program, stops start-up with one line naming LISTEN and exit 2, and the holder keeps
/// serving.
@Suite(.serialized) struct StartupConflictTests {
    @Test func aSecondServiceOnTheSamePortExits2NamingListen() throws {
        let permit = StackPermit()
        defer { withExtendedLifetime(permit) {} }
        let redis = try RedisServer()
        defer { redis.stop() }
        let first = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"], environment: Self.environment(redis, listen: "127.0.0.1:0"))
        defer { first.stop() }
        let port = try ServiceProcess.listeningPort(of: first)
        let second = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"],
                                      environment: Self.environment(redis, listen: "127.0.0.1:\(port)"))
        try Self.expectRefusedNamingListen(second)
        // The first still owns the port alone.
        #expect(try CurlClient.request("GET", "http://127.0.0.1:\(port)/healthz").status == 200)
        #expect(first.isRunning)
    }

    @Test func aPortHeldByAnotherProgramExits2NamingListen() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // A foreign listener (with SO_REUSEPORT, so only our refusal to use it keeps us apart).
        let holder = try ChildProcess("/usr/bin/python3", ["-u", "-c", """
        import socket, time
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        print("port", s.getsockname()[1], flush=True)
        time.sleep(120)
        """])
        defer { holder.stop() }
        let line = try holder.waitForLine(containing: "port ")
        guard let port = line.split(separator: " ").last.flatMap({ Int($0) }) else { throw TestFailure("no port in \(line)") }
        let service = try ChildProcess(BuiltProducts.path("points-expiry"), ["serve"],
                                       environment: Self.environment(redis, listen: "127.0.0.1:\(port)"))
        try Self.expectRefusedNamingListen(service)
    }

    private static func expectRefusedNamingListen(_ service: ChildProcess) throws {
        #expect(try service.waitForExit() == 2)
        let lines = service.outputText.split(separator: "\n")
        #expect(lines.count == 1, "\(service.outputText)")
        #expect(lines.first?.contains("LISTEN") == true)
        #expect(lines.first?.contains("in use") == true)
    }

    private static func environment(_ redis: RedisServer, listen: String) -> [String: String] {
        ["LISTEN": listen, "WORKERS": "2", "REDIS_URL": redis.url, "VOUCHERIFY_APP_ID": FakeVoucherify.appID,
         "VOUCHERIFY_APP_TOKEN": FakeVoucherify.appToken, "LOG_LEVEL": "info", "LOG_FORMAT": "text"]
    }
}
