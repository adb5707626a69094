import Foundation
import Testing
import TestSupport

/// `points-expiry warm` as an operator runs it: the built binary, stderr not a terminal, against
/// a served replica with redis-server and the fake Voucherify.
@Suite(.serialized) struct WarmCommandTests {
    static let knownMembers = (1...2000).map { String(format: "MEMBER-%06d", $0) }
    static let unknownMembers = (1...10).map { "NOPE-\($0)" }
    /// `warm progress: done=1200/2000 warmed=1100 fresh=80 failed=20 pending=800 rate=240.0/s eta=3s`
    static var progressLine: Regex<(Substring, Substring)> { #/^warm progress: done=\d+/\d+ warmed=\d+ fresh=\d+ failed=\d+ pending=\d+ rate=\d+\.\d/s eta=(\d+s|unknown)$/# }

    /// The fake's members MEMBER-000001…MEMBER-002000, and a rate limit high enough that warming
    /// (which may spend only half of it) never waits for a new window.
    private func fleet() throws -> Fleet {
        try Fleet(replicas: 1, fakeArguments: ["--members", "2000", "--rate-limit", "1000000"])
    }

    /// Runs `points-expiry warm` to its end; returns its exit status and everything it wrote.
    private func warm(_ service: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let child = try ChildProcess(BuiltProducts.path("points-expiry"), [
            "warm", "--service", service, "--campaign", FakeVoucherify.campaignID, "--progress-interval", "0.2",
        ] + arguments)
        let status = try child.waitForExit(timeout: 300)
        return (status, child.outputText)
    }

    /// Starts `points-expiry warm` with its standard input and standard error as given (a
    /// `ChildProcess` keeps both for itself), launched like every child of the tests.
    private func launchWarm(_ service: String, _ arguments: [String], standardInput: FileHandle, standardError: FileHandle) throws -> Process {
        let process = Process()
        process.standardInput = standardInput
        process.standardOutput = FileHandle.nullDevice
        process.standardError = standardError
        try ChildLauncher.launch(process, BuiltProducts.path("points-expiry"), [
            "warm", "--service", service, "--campaign", FakeVoucherify.campaignID,
        ] + arguments)
        return process
    }

    /// Waits for a process from `launchWarm` to end; its exit code, 128 + the signal when a signal
    /// ended it. Whichever reaps it first, waitpid here or Foundation's own monitor, has the status.
    private func exitCode(of process: Process) throws -> Int32 {
        let pid = process.processIdentifier
        defer { if process.isRunning { kill(pid, SIGKILL) } }
        var status: Int32 = 0
        var reapedHere = false
        try waitUntil("points-expiry warm exits") {
            reapedHere = waitpid(pid, &status, WNOHANG) == pid
            return reapedHere || !process.isRunning
        }
        if reapedHere { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// The (code, error) pairs of a `--failed-out` file, after checking its header. Neither
    /// column holds commas here, so the message column (quoted, with commas) can stay unparsed.
    private func failedOut(_ file: URL) throws -> [(code: String, error: String)] {
        let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
        #expect(lines.first == "code,error,message")
        return lines.dropFirst().map { line in
            let fields = line.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
            return (String(fields[0]), fields.count > 1 ? String(fields[1]) : "")
        }
    }

    /// The number after `label:` in the summary.
    private func summaryCount(_ output: String, _ label: String) -> Int? {
        guard let line = output.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(label + ":") }) else { return nil }
        return line.split(separator: ":", maxSplits: 1).last.flatMap { $0.split(separator: " ").first }.flatMap { Int($0) }
    }

    private func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pe-warm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func warmsKnownMembersListsUnknownOnesAndReRunsFromTheFailedOutFile() throws {
        let fleet = try fleet()
        defer { withExtendedLifetime(fleet) {} }
        let service = fleet.replicas[0].baseURL
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }

        // 2,000 known and 10 unknown codes, 5 blank lines and 7 repeats, CRLF line ends.
        var lines = Self.knownMembers + Self.unknownMembers
        for (offset, position) in [3, 500, 1000, 1500, 2005].enumerated() { lines.insert(offset % 2 == 0 ? "" : "   ", at: position) }
        lines += ["MEMBER-000001", " MEMBER-000002 ", "MEMBER-001999", "MEMBER-002000", "NOPE-1", "NOPE-10", "MEMBER-000500"]
        let members = directory.appendingPathComponent("members.txt")
        try Data(lines.joined(separator: "\r\n").utf8).write(to: members)
        let failed = directory.appendingPathComponent("failed.csv")

        let first = try warm(service, ["--members-file", members.path, "--failed-out", failed.path])
        #expect(first.status == 1, "\(first.output)")
        let rows = try failedOut(failed)
        #expect(Set(rows.map(\.code)) == Set(Self.unknownMembers))
        #expect(rows.count == Self.unknownMembers.count)
        #expect(rows.allSatisfy { $0.error == "not_found" })
        #expect(summaryCount(first.output, "requested") == 2010)
        #expect((summaryCount(first.output, "warmed") ?? 0) + (summaryCount(first.output, "already fresh") ?? 0) == 2000)
        #expect(summaryCount(first.output, "failed") == 10)
        #expect(first.output.contains("failed:        10 (not_found: 10)"))
        #expect(summaryCount(first.output, "not done") == 0)
        #expect(first.output.contains("skipped lines: 12 (blank: 5, duplicate: 7)"))
        let progress = first.output.split(separator: "\n").filter { $0.hasPrefix("warm progress:") }
        #expect(!progress.isEmpty, "a progress line every 0.2 s while it runs")
        #expect(progress.allSatisfy { $0.wholeMatch(of: Self.progressLine) != nil }, "\(progress)")
        #expect(!first.output.contains("\r"), "no terminal redraws when stderr is not a terminal")

        // Warmed means cached: the next caller hits.
        #expect(try fleet.replicas[0].get(member: "MEMBER-001234").headers["x-cache"] == "hit")

        // The failed-out file is a members file: the same members fail again.
        let again = directory.appendingPathComponent("failed-again.csv")
        let rerun = try warm(service, ["--members-file", failed.path, "--failed-out", again.path])
        #expect(rerun.status == 1, "\(rerun.output)")
        #expect(summaryCount(rerun.output, "requested") == 10)
        let rerunRows = try failedOut(again)
        #expect(Set(rerunRows.map(\.code)) == Set(Self.unknownMembers))
        #expect(rerunRows.allSatisfy { $0.error == "not_found" })
    }

    @Test func aTimeoutLeavesTheMembersNotReachedInTheFailedOutFileAsDeferred() throws {
        let fleet = try fleet()
        defer { _ = try? fleet.fake.release() }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.csv")
        try Data((["code"] + Self.knownMembers.prefix(30)).joined(separator: "\n").utf8).write(to: members)
        let failed = directory.appendingPathComponent("failed.csv")
        // Voucherify reads hang: the service answers each call just before its deadline, which
        // is the job's time left, with everything deferred.
        try fleet.fake.hold(holdMilliseconds: 60_000)

        let run = try warm(fleet.replicas[0].baseURL, ["--members-file", members.path, "--failed-out", failed.path,
                                                        "--timeout", "2", "--batch", "10"])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("warm summary: stopped at the --timeout"))
        #expect(summaryCount(run.output, "not done") == 30)
        let rows = try failedOut(failed)
        #expect(Set(rows.map(\.code)) == Set(Self.knownMembers.prefix(30)))
        #expect(rows.allSatisfy { $0.error == "deferred" })
    }

    @Test func sigintStopsSendingWaitsForCallsInFlightAndSummarises() throws {
        let fleet = try fleet()
        defer { _ = try? fleet.fake.release() }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        try Data(Self.knownMembers.prefix(50).joined(separator: "\n").utf8).write(to: members)
        let failed = directory.appendingPathComponent("failed.csv")
        try fleet.fake.hold(holdMilliseconds: 60_000)

        let child = try ChildProcess(BuiltProducts.path("points-expiry"), [
            "warm", "--service", fleet.replicas[0].baseURL, "--campaign", FakeVoucherify.campaignID,
            "--members-file", members.path, "--failed-out", failed.path, "--batch", "10", "--concurrency", "2",
        ])
        try waitUntil("the warm's reads are held at the fake") { try fleet.fake.heldCount() > 0 }
        child.signal(SIGINT)
        _ = try child.waitForLine(containing: "sending no more; waiting for 2 call(s) in flight")
        try fleet.fake.release()
        #expect(try child.waitForExit() == 1)
        #expect(child.outputText.contains("warm summary: interrupted"))
        #expect(summaryCount(child.outputText, "warmed") == 20, "the two calls in flight were answered")
        #expect(summaryCount(child.outputText, "not done") == 30)
        let rows = try failedOut(failed)
        #expect(rows.count == 30)
        #expect(rows.allSatisfy { $0.error == "cancelled" })
    }

    /// `--service https://…` negotiates HTTP/2 by ALPN, and `--cacert` trusts a private CA (here
    /// the service's self-signed certificate); without it the certificate does not verify.
    @Test func warmsAServiceOverTLSTrustingItsCA() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = try TestCertificate(in: directory.path, name: "service")
        let service = try ServiceUnderTest(environment: ["TLS_CERT_FILE": certificate.certificateFile, "TLS_KEY_FILE": certificate.keyFile],
                                           waitUntilReady: false)
        try waitUntil("every worker of the service is ready") { service.app.allWorkersReady() }
        let members = directory.appendingPathComponent("members.txt")
        try Data("MEMBER-000001\nMEMBER-000002\n".utf8).write(to: members)
        let url = "https://127.0.0.1:\(service.app.port)"

        let trusted = try warm(url, ["--members-file", members.path, "--cacert", certificate.certificateFile])
        #expect(trusted.status == 0, "\(trusted.output)")
        #expect((summaryCount(trusted.output, "warmed") ?? 0) + (summaryCount(trusted.output, "already fresh") ?? 0) == 2)

        // The job cannot run as asked: exit 2 with curl's reason, not retries until --timeout.
        let untrusted = try warm(url, ["--members-file", members.path, "--timeout", "30"])
        #expect(untrusted.status == 2, "\(untrusted.output)")
        #expect(untrusted.output.contains("certificate"), "\(untrusted.output)")
    }

    @Test func aMissingMembersFileIsExitTwoNamingIt() throws {
        let missing = "/nonexistent-\(UUID().uuidString)/members.csv"
        let run = try warm("http://127.0.0.1:\(try freePort())", ["--members-file", missing])
        #expect(run.status == 2)
        #expect(run.output.split(separator: "\n").count == 1)
        #expect(run.output.contains(missing))
    }

    @Test func aCSVWithoutACodeColumnIsExitTwo() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.csv")
        try Data("name,card\nAnn,MEMBER-000001\n".utf8).write(to: members)
        let run = try warm("http://127.0.0.1:\(try freePort())", ["--members-file", members.path])
        #expect(run.status == 2)
        #expect(run.output.contains("no `code` column in \(members.path) (columns: name, card)"), "\(run.output)")
    }

    @Test func anUnreachableServiceIsExitTwo() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        try Data("MEMBER-000001\n".utf8).write(to: members)
        let service = "http://127.0.0.1:\(try freePort())"
        let run = try warm(service, ["--members-file", members.path])
        #expect(run.status == 2)
        #expect(run.output.contains("service unreachable at \(service):"), "\(run.output)")
    }

    @Test func aJobKilledMidRunLeavesAFailedOutFileToReRunFrom() throws {
        let fleet = try fleet()
        defer { _ = try? fleet.fake.release() }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        let codes = Array(Self.knownMembers.prefix(30))
        try Data(codes.joined(separator: "\n").utf8).write(to: members)
        let failed = directory.appendingPathComponent("failed.csv")
        try fleet.fake.hold(holdMilliseconds: 60_000)

        let child = try ChildProcess(BuiltProducts.path("points-expiry"), [
            "warm", "--service", fleet.replicas[0].baseURL, "--campaign", FakeVoucherify.campaignID,
            "--members-file", members.path, "--failed-out", failed.path, "--batch", "10", "--concurrency", "1",
        ])
        try waitUntil("the warm's reads are held at the fake") { try fleet.fake.heldCount() > 0 }
        child.signal(SIGKILL)
        _ = try child.waitForExit()
        let rows = try failedOut(failed)
        #expect(rows.map(\.code) == codes)
        #expect(rows.allSatisfy { $0.error == "not_started" })
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["failed.csv", "members.txt"],
                "no temporary file left beside it")

        _ = try fleet.fake.release()
        let rerun = try warm(fleet.replicas[0].baseURL, ["--members-file", failed.path])
        #expect(rerun.status == 0, "\(rerun.output)")
        #expect(summaryCount(rerun.output, "requested") == 30)
    }

    /// Kubernetes sends SIGTERM and kills the pod 30 s later (its default grace period): the call
    /// in flight must be over by then, and the summary printed.
    @Test func sigtermWithACallInFlightEndsWithinKubernetesGracePeriod() throws {
        let fleet = try fleet()
        defer { _ = try? fleet.fake.release() }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        try Data(Self.knownMembers.prefix(400).joined(separator: "\n").utf8).write(to: members)
        // Each read is answered after 3 s, a few at a time: a call of 200 members would take
        // over a minute, so only its own deadline ends it sooner.
        try fleet.fake.hold(holdMilliseconds: 3_000)

        let child = try ChildProcess(BuiltProducts.path("points-expiry"), [
            "warm", "--service", fleet.replicas[0].baseURL, "--campaign", FakeVoucherify.campaignID,
            "--members-file", members.path, "--batch", "200", "--concurrency", "1",
        ])
        try waitUntil("the warm's reads are held at the fake") { try fleet.fake.heldCount() > 0 }
        let signalledAt = ContinuousClock.now
        child.signal(SIGTERM)
        #expect(try child.waitForExit(timeout: 60) == 1)
        #expect(ContinuousClock.now - signalledAt < .seconds(30), "\(child.outputText)")
        #expect(child.outputText.contains("warm summary: interrupted"))
        let warmed = summaryCount(child.outputText, "warmed") ?? 0
        #expect(warmed > 0, "the call in flight was answered with what it reached")
        #expect(warmed + (summaryCount(child.outputText, "not done") ?? 0) == 400, "\(child.outputText)")
    }

    @Test func ctrlCWhileReadingStandardInputEndsTheJob() throws {
        let input = Pipe()
        let process = try launchWarm("http://127.0.0.1:\(try freePort())", ["-"],
                                     standardInput: input.fileHandleForReading, standardError: FileHandle.nullDevice)
        // More than a pipe holds: the write returns only once the job has read most of it, so it
        // is reading; the pipe stays open, so the reading does not end by itself.
        try input.fileHandleForWriting.write(contentsOf: Data(String(repeating: "MEMBER-000001\n", count: 80_000).utf8))
        kill(process.processIdentifier, SIGINT)
        #expect(try exitCode(of: process) == 128 + SIGINT)
        withExtendedLifetime(input) {}
    }

    @Test func aStandardErrorNobodyReadsDoesNotKillTheJob() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        try Data("MEMBER-000001\n".utf8).write(to: members)
        // Its reading end is closed before the job starts: every write to it fails (EPIPE).
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw TestFailure("pipe() failed") }
        close(ends[0])
        let process = try launchWarm("http://127.0.0.1:\(try freePort())", ["--members-file", members.path],
                                     standardInput: FileHandle.nullDevice,
                                     standardError: FileHandle(fileDescriptor: ends[1], closeOnDealloc: true))
        #expect(try exitCode(of: process) == 2, "the usage error's exit code, not death by SIGPIPE (141)")
    }

    @Test func aServiceThatNeverAcceptsTheConnectionIsUnreachable() throws {
        let unaccepting = try UnacceptingPort()
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        try Data("MEMBER-000001\n".utf8).write(to: members)
        let service = "http://127.0.0.1:\(unaccepting.port)"
        let run = try warm(service, ["--members-file", members.path, "--timeout", "30"])
        #expect(run.status == 2, "\(run.output)")
        #expect(run.output.contains("service unreachable at \(service): connect timed out after 5000 ms"), "\(run.output)")
    }

    /// An HTTP/1.1-only server (the fake Voucherify) breaks the exchange right after connecting.
    @Test func aPeerThatDoesNotSpeakHTTP2IsUnreachable() throws {
        let fake = try FakeVoucherify()
        defer { fake.stop() }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let members = directory.appendingPathComponent("members.txt")
        try Data("MEMBER-000001\n".utf8).write(to: members)
        let run = try warm(fake.baseURL, ["--members-file", members.path, "--timeout", "30"])
        #expect(run.status == 2, "\(run.output)")
        #expect(run.output.contains("service unreachable at \(fake.baseURL):"), "\(run.output)")
    }

    @Test func aBadFlagValueIsExitTwoNamingTheFlag() throws {
        let run = try warm("http://127.0.0.1:1", ["--members-file", "-", "--batch", "5000"])
        #expect(run.status == 2)
        #expect(run.output.contains("--batch"))
    }
}
