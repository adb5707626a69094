import Foundation

/// Built products live next to the test bundle (`.build/<config>/`).
enum BuiltProducts {
    static let directory: URL = {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent()
    }()

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A child process that is terminated (and reaped) when the test lets go of it. Its output
/// goes to a temporary file (pipe read handlers proved unreliable for fast-exiting children).
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let outputURL: URL
    private var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("pe-child-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: outputURL.path, contents: nil) else { throw TestFailure("cannot create \(outputURL.path)") }
        let output = try FileHandle(forWritingTo: outputURL)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        try output.close()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: outputURL)
    }

    var outputText: String { (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "" }

    /// Waits until a line of output contains `text`; returns that line.
    func waitForLine(containing text: String, timeout: TimeInterval = 20) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = outputText.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
            if !isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw TestFailure("\(process.executableURL?.lastPathComponent ?? "process") never printed \"\(text)\"; output:\n\(outputText)")
    }

    func signal(_ signal: Int32) { Glibc.kill(process.processIdentifier, signal) }

    /// Foundation's Process on Linux starts children with most signals blocked, so a child that
    /// does not unblock SIGTERM itself (redis-server) only stops on `forceKill()`.
    func forceKill() {
        guard exitStatus == nil else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        _ = try? waitForExit(timeout: 5)
    }

    /// SIGTERM, then SIGKILL if it lingers.
    func stop() {
        guard exitStatus == nil else { return }
        process.terminate()
        if (try? waitForExit(timeout: 5)) == nil {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = try? waitForExit(timeout: 5)
        }
    }

    /// Waits for the process to exit by itself; returns its exit code (128 + signal when killed).
    /// Reaps with waitpid: Foundation's own child monitoring does not run in this test host.
    func waitForExit(timeout: TimeInterval = 20) throws -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        repeat {
            let reaped = waitpid(process.processIdentifier, &status, WNOHANG)
            if reaped == process.processIdentifier {
                let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                exitStatus = code
                return code
            }
            if reaped < 0 {
                if errno == EINTR { continue }
                // Foundation reaped it first: wait until it publishes the status.
                while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
                guard !process.isRunning else { break }
                let code = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
                exitStatus = code
                return code
            }
            Thread.sleep(forTimeInterval: 0.01)
        } while Date() < deadline
        throw TestFailure("process did not exit within \(timeout) s")
    }

    var isRunning: Bool { (try? waitForExit(timeout: 0)) == nil }
}

/// A port on 127.0.0.1 that was free a moment ago.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = loopback(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw TestFailure("bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits until 127.0.0.1:port accepts connections.
func waitForPort(_ port: Int, timeout: TimeInterval = 10) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if connected == 0 { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    throw TestFailure("nothing listens on 127.0.0.1:\(port)")
}

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return address
}

/// Runs a command to completion and returns its standard output.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    reap(process)
    return String(decoding: data, as: UTF8.self)
}

/// Waits for a finished child (its output is already at EOF) without Foundation's waitUntilExit.
func reap(_ process: Process) {
    var status: Int32 = 0
    _ = waitpid(process.processIdentifier, &status, 0)
}
