import Foundation
import TestSupport

/// The built `points-expiry` binary (2 workers, its own redis-server and fake Voucherify, the
/// webhook on) as an attacker meets it, and what an attack costs it: resident memory and CPU
/// time from /proc, and whether another client is still served.
final class H2AbuseTarget: @unchecked Sendable {
    let fleet: Fleet
    var service: ServiceProcess { fleet.replicas[0] }
    let port: Int
    private let pid: Int32

    init() throws {
        fleet = try Fleet(replicas: 1, environment: ["WEBHOOK_SECRET": ServiceUnderTest.webhookSecret])
        let service = fleet.replicas[0]
        guard let port = service.baseURL.split(separator: ":").last.flatMap({ Int($0) }) else { throw TestFailure("no port in \(service.baseURL)") }
        self.port = port
        pid = service.child.process.processIdentifier
    }

    /// VmRSS, in bytes.
    func residentBytes() throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kiB = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { throw TestFailure("no VmRSS for \(pid)") }
        return kiB * 1024
    }

    /// User plus system CPU time the process has used, in seconds.
    func cpuSeconds() throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which may hold spaces) start at field 3; utime and
        // stime are fields 14 and 15, in clock ticks.
        guard let close = stat.lastIndex(of: ")") else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A fresh client's health check is answered 200.
    func servesAnotherClient() -> Bool {
        (try? CurlClient.request("GET", service.baseURL + "/healthz"))?.status == 200
    }

    /// Whether the service is still running (an attack must not crash it).
    var isRunning: Bool { service.child.isRunning }

    func connect(settings: [(id: UInt16, value: UInt32)] = []) throws -> H2AbuseClient {
        try H2AbuseClient(port: port, settings: settings)
    }
}
