import Foundation

/// A real redis-server on a free loopback port, with no persistence.
final class RedisServer: @unchecked Sendable {
    let port: Int
    private var child: ChildProcess?

    init() throws {
        port = try freePort()
        try start()
    }

    var url: String { "redis://127.0.0.1:\(port)" }

    func start() throws {
        child = try ChildProcess("/usr/bin/redis-server", ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"])
        try waitForPort(port)
    }

    func stop() {
        child?.forceKill()
        child = nil
    }

    /// Runs redis-cli against this server; returns its output without the trailing newline.
    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try run("/usr/bin/redis-cli", ["-p", String(port)] + arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
