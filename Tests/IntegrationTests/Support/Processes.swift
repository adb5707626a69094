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

/// Polls `condition` until it holds. The deadline is generous on purpose: on a loaded machine
/// things get slow, not wrong, so only a condition that never comes should fail a test.
func waitUntil(_ what: @autoclosure () -> String, timeout: TimeInterval = 60, interval: TimeInterval = 0.02,
               _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while true {
        if try condition() { return }
        guard ContinuousClock.now < deadline else { throw TestFailure("gave up after \(Int(timeout)) s waiting until \(what())") }
        Thread.sleep(forTimeInterval: interval)
    }
}

/// Starts every child process of the tests so that it dies with the test process, however that
/// ends (a crash or SIGKILL included): children run under `setpriv --pdeathsig KILL`, which sets
/// PR_SET_PDEATHSIG and then execs the program (the setting survives exec; the pid stays the same).
/// The kernel sends that signal when the *thread* that spawned the child exits, so every child is
/// spawned by this one thread, which never exits; Foundation's Process runs posix_spawn on the
/// calling thread, and Swift Testing's worker threads may come and go.
///
/// The thread also clears its signal mask first: children inherit the spawning thread's mask,
/// and the test runner's threads block most signals, so redis-server would ignore SIGTERM.
/// (Left open: a test process killed in the instant between fork and setpriv's prctl.)
enum ChildLauncher {
    static let setpriv = "/usr/bin/setpriv"

    /// Launches `process` (executable and arguments as given), wrapped in setpriv.
    static func launch(_ process: Process, _ executable: String, _ arguments: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: setpriv) else {
            throw TestFailure("\(setpriv) (util-linux) is needed to tie child processes to the test process")
        }
        process.executableURL = URL(fileURLWithPath: setpriv)
        process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        try spawner.run { try process.run() }
    }

    private static let spawner = SpawnerThread()

    private final class SpawnerThread: @unchecked Sendable {
        private let condition = NSCondition()
        private var jobs: [() -> Void] = []

        init() {
            let thread = Thread { [self] in
                var nothing = sigset_t()
                sigemptyset(&nothing)
                pthread_sigmask(SIG_SETMASK, &nothing, nil)
                while true {
                    condition.lock()
                    while jobs.isEmpty { condition.wait() }
                    let job = jobs.removeFirst()
                    condition.unlock()
                    job()
                }
            }
            thread.name = "test-child-spawner"
            thread.start()
        }

        func run(_ body: @escaping () throws -> Void) throws {
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var outcome: Result<Void, Error>?
            nonisolated(unsafe) let body = body
            condition.lock()
            jobs.append {
                outcome = Result { try body() }
                done.signal()
            }
            condition.signal()
            condition.unlock()
            done.wait()
            try outcome!.get()
        }
    }
}

/// A child process that is terminated (and reaped) when the test lets go of it, and killed by the
/// kernel if the test process dies first (see `ChildLauncher`). Its output goes to a temporary
/// file (pipe read handlers proved unreliable for fast-exiting children).
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let name: String
    private let outputURL: URL
    private var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        name = URL(fileURLWithPath: executable).lastPathComponent
        outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("pe-child-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: outputURL.path, contents: nil) else { throw TestFailure("cannot create \(outputURL.path)") }
        let output = try FileHandle(forWritingTo: outputURL)
        // The tests read the service's log lines as text; its default off a terminal is JSON, so a
        // test that checks the JSON lines asks for them (or for the default) itself.
        process.environment = ProcessInfo.processInfo.environment.merging(["LOG_FORMAT": "text"].merging(environment) { _, new in new }) { _, new in new }
        process.standardOutput = output
        process.standardError = output
        try ChildLauncher.launch(process, executable, arguments)
        try output.close()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: outputURL)
    }

    var outputText: String { (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "" }

    /// Waits until a line of output contains `text`; returns that line. Fails at once if the
    /// process exits without printing it.
    func waitForLine(containing text: String, timeout: TimeInterval = 60) throws -> String {
        var found: String?
        try waitUntil("\(name) prints \"\(text)\"", timeout: timeout) {
            let running = isRunning  // checked first: once it has exited, the output read next is complete
            found = outputText.split(separator: "\n").first(where: { $0.contains(text) }).map(String.init)
            if found == nil, !running { throw TestFailure("\(name) exited without printing \"\(text)\"; output:\n\(outputText)") }
            return found != nil
        }
        return found!
    }

    func signal(_ signal: Int32) { Glibc.kill(process.processIdentifier, signal) }

    /// SIGKILL, for children whose graceful stop the test does not need (redis-server).
    func forceKill() {
        guard exitStatus == nil else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        _ = try? waitForExit(timeout: 60)
    }

    /// SIGTERM, then SIGKILL if it lingers.
    func stop() {
        guard exitStatus == nil else { return }
        process.terminate()
        if (try? waitForExit(timeout: 10)) == nil {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = try? waitForExit(timeout: 60)
        }
    }

    /// Waits for the process to exit by itself; returns its exit code (128 + signal when killed).
    /// Reaps with waitpid: Foundation's own child monitoring does not run in this test host.
    func waitForExit(timeout: TimeInterval = 60) throws -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
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
                while process.isRunning, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
                guard !process.isRunning else { break }
                let code = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
                exitStatus = code
                return code
            }
            guard ContinuousClock.now < deadline else { break }
            Thread.sleep(forTimeInterval: 0.01)
        } while true
        throw TestFailure("\(name) did not exit within \(Int(timeout)) s")
    }

    var isRunning: Bool { (try? waitForExit(timeout: 0)) == nil }
}

/// A port on 127.0.0.1 that was free a moment ago. Only for redis-server, which cannot report
/// the port it got from binding port 0 (see `RedisServer`); everything else binds port 0.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
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

/// Runs a command to completion and returns its standard output.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> String {
    String(decoding: try runWithInput(executable, arguments, nil), as: UTF8.self)
}

/// Runs a command to completion, feeding it `input` (nil: /dev/null); returns its standard output.
func runWithInput(_ executable: String, _ arguments: [String], _ input: Data?) throws -> Data {
    let process = Process()
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    process.standardOutput = stdout
    process.standardError = FileHandle.nullDevice
    try ChildLauncher.launch(process, executable, arguments)
    if let input {
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
    }
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    reap(process)
    return output
}

/// Waits for a finished child (its output is already at EOF) without Foundation's waitUntilExit.
func reap(_ process: Process) {
    var status: Int32 = 0
    _ = waitpid(process.processIdentifier, &status, 0)
}

/// Waits until the wall clock is past `instant` (a record's window ends by the clock).
func waitUntilPast(_ instant: Date) throws {
    try waitUntil("the clock passes \(instant)") { Date() > instant }
}
