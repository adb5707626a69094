import Foundation

/// A self-signed certificate for localhost and 127.0.0.1 and its key (PEM), made with the
/// `openssl` command line tool in a directory of the caller's.
public struct TestCertificate: Sendable {
    public let certificateFile: String
    public let keyFile: String

    /// `cert-<name>.pem` and `key-<name>.pem` in `directory`.
    public init(in directory: String, name: String) throws {
        certificateFile = directory + "/cert-\(name).pem"
        keyFile = directory + "/key-\(name).pem"
        let result = try runTool("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2", "-keyout", keyFile, "-out", certificateFile,
        ])
        guard result.status == 0 else { throw ToolFailure("openssl req failed: \(result.output)") }
    }
}

public struct ToolFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A fresh empty directory under the system's temporary directory.
public func makeTemporaryDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "points-expiry-test-XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw ToolFailure("mkdtemp failed") }
    return String(cString: made)
}

/// Runs a program to its end: its exit status and what it wrote to stdout (`output`) and stderr.
@discardableResult
public func runTool(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read stderr on another thread so neither pipe can fill up and stall the tool.
    let errorText = LockedText()
    let readErrors = Thread { errorText.set(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)) }
    readErrors.start()
    let outputText = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, outputText, errorText.waitForValue())
}

private final class LockedText: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: String?

    func set(_ text: String) {
        condition.lock()
        value = text
        condition.signal()
        condition.unlock()
    }

    func waitForValue() -> String {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value ?? ""
    }
}

/// Polls `condition` until it holds; throws after `timeout` seconds. For conditions another
/// thread or process makes true: never a fixed sleep.
public func waitFor(_ what: @autoclosure () -> String, timeout: Double = 30, _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw ToolFailure("gave up after \(Int(timeout)) s waiting until \(what())") }
        usleep(10_000)
    }
}
