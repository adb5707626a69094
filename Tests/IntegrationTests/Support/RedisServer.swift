import Foundation

/// A real redis-server on a free loopback port, with no persistence.
final class RedisServer: @unchecked Sendable {
    let port: Int
    let password: String?
    private var child: ChildProcess?

    init(password: String? = nil) throws {
        port = try freePort()
        self.password = password
        try start()
    }

    var url: String { password.map { "redis://:\($0)@127.0.0.1:\(port)" } ?? "redis://127.0.0.1:\(port)" }

    func start() throws {
        let auth = password.map { ["--requirepass", $0] } ?? []
        child = try ChildProcess("/usr/bin/redis-server", ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"] + auth)
        try waitForPort(port)
    }

    func stop() {
        child?.forceKill()
        child = nil
    }

    /// Runs redis-cli against this server; returns its output without the trailing newline.
    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try run("/usr/bin/redis-cli", ["-p", String(port)] + (password.map { ["--no-auth-warning", "-a", $0] } ?? []) + arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
