import Foundation

/// A real redis-server on a loopback port, with no persistence.
///
/// redis-server cannot bind port 0 and tell us the port it got, so the port is picked with
/// `freePort()` and may be taken by someone else before redis-server binds it: a start that
/// fails with "Address already in use" is retried on another port (and, for a restart, which
/// must keep the port the service knows, on the same port until the deadline).
final class RedisServer: @unchecked Sendable {
    let port: Int
    let password: String?
    private var child: ChildProcess?

    init(password: String? = nil) throws {
        self.password = password
        for _ in 0..<20 {
            let candidate = try freePort()
            if let started = try Self.launch(port: candidate, password: password) {
                port = candidate
                child = started
                return
            }
        }
        throw TestFailure("redis-server found no free port in 20 attempts")
    }

    var url: String { password.map { "redis://:\($0)@127.0.0.1:\(port)" } ?? "redis://127.0.0.1:\(port)" }

    /// Starts it again after `stop()`, on the same port.
    func start() throws {
        var started: ChildProcess?
        try waitUntil("redis-server can bind 127.0.0.1:\(port) again", interval: 0.1) {
            started = try Self.launch(port: port, password: password)
            return started != nil
        }
        child = started
    }

    /// nil when the port was taken.
    private static func launch(port: Int, password: String?) throws -> ChildProcess? {
        let auth = password.map { ["--requirepass", $0] } ?? []
        let child = try ChildProcess("/usr/bin/redis-server", ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"] + auth)
        do {
            _ = try child.waitForLine(containing: "Ready to accept connections")
            return child
        } catch {
            if child.outputText.contains("Address already in use") { return nil }
            throw error
        }
    }

    /// Kills it (SIGKILL: no data to save, and nothing to wait for).
    func stop() {
        child?.forceKill()
        child = nil
    }

    /// SIGSTOP: the server keeps its connections and accepts new ones (the kernel does), but
    /// answers nothing until `resume()`. Do not call `cli` in between: it would wait too.
    func suspend() { child?.signal(SIGSTOP) }

    func resume() { child?.signal(SIGCONT) }

    /// Runs redis-cli against this server; returns its output without the trailing newline.
    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try run("/usr/bin/redis-cli", ["-p", String(port)] + (password.map { ["--no-auth-warning", "-a", $0] } ?? []) + arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
