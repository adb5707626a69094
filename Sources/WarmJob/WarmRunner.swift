import EventLoop
import Glibc
import HTTPClient

/// Runs a warm job: reads the members, sends WarmMembers calls over HTTP/2 with the project's
/// curl client on a loop driven by the calling thread, shows progress, and writes the summary
/// and the `--failed-out` file. Every decision is the ledger's; this is the I/O around it.
public enum WarmRunner {
    static let stopSignals = [SIGINT, SIGTERM]

    /// Runs the job the command line asks for and returns its exit code: 0 or 1 (see
    /// `WarmLedger.exitCode`), or 2 after one line on stderr saying why the job could not run as
    /// asked (bad usage or input, service unreachable or without WarmMembers). Call on the main
    /// thread before any other thread starts: libcurl's global set-up and the signal mask are
    /// process-wide, and threads inherit the mask.
    public static func run(_ arguments: WarmConfiguration.Arguments) -> Int32 {
        // Progress goes to stderr, which a log collector or `| head` may close: a failed write
        // is dropped (see StandardError), it must not end the job.
        signal(SIGPIPE, SIG_IGN)
        do {
            return try run(WarmConfiguration(arguments))
        } catch {
            StandardError.write("points-expiry warm: \(error.description)\n")
            return 2
        }
    }

    private static func run(_ configuration: WarmConfiguration) throws(WarmUsageError) -> Int32 {
        // Read before the stop signals are blocked: reading may wait on standard input for as
        // long as the sender takes, and Ctrl-C must end it.
        let members = try MemberInput.read(configuration.members)
        SignalWatcher.block(stopSignals)
        if let path = configuration.failedOutPath { try FailedOutFile.write(FailedOutFile.notStartedRows(members.codes), to: path) }
        do {
            try Curl.globalInit()
        } catch {
            throw WarmUsageError("\(error)")
        }

        let job: WarmRun
        do {
            job = try WarmRun(configuration: configuration, members: members)
        } catch {
            throw WarmUsageError("cannot start: \(error)")
        }
        job.loop.run()
        let ledger = job.ledger
        if let path = configuration.failedOutPath { try FailedOutFile.write(ledger.failedOutRows, to: path) }
        switch ledger.fatalProblem {
        case .unreachable(let why)?:
            throw WarmUsageError("service unreachable at \(configuration.service): \(why)")
        case .unsupported(let why)?:
            throw WarmUsageError("the service at \(configuration.service) does not offer WarmMembers (unimplemented: \(why))")
        case nil:
            StandardError.write(ProgressText.summary(ledger, members: members, elapsedMilliseconds: job.elapsedMilliseconds))
            return ledger.exitCode
        }
    }
}

/// One job on its loop. Loop-confined: everything runs on the thread that calls `loop.run()`.
private final class WarmRun {
    let loop: Loop
    private(set) var ledger: WarmLedger
    private let configuration: WarmConfiguration
    private let startedAt: Int64
    private let deadline: Int64
    /// Each call in flight, by batch id, with a curl multi handle of its own and so a connection
    /// of its own: libcurl 7.88 fails a transfer it adds to an h2c connection it already used
    /// ("Error in the HTTP2 framing layer"; see scripts/bench-shield.sh). A connection per call
    /// of up to 1000 members costs nothing worth sharing.
    private var calls: [Int: (multi: CurlMulti, transfer: HTTPTransfer)] = [:]
    private let resumeTimer: Timer
    private let deadlineTimer: Timer
    private let progressTimer: Timer
    private var signalWatcher: SignalWatcher?
    private var signalsReceived = 0
    private let stderrIsTerminal = isatty(STDERR_FILENO) != 0
    private var finished = false

    init(configuration: WarmConfiguration, members: MemberList) throws {
        self.configuration = configuration
        ledger = WarmLedger(members: members.codes, batchSize: configuration.batchSize)
        loop = try Loop()
        resumeTimer = try Timer(loop: loop)
        deadlineTimer = try Timer(loop: loop)
        progressTimer = try Timer(loop: loop)
        startedAt = loop.monotonicMilliseconds
        deadline = startedAt + configuration.timeoutMilliseconds
        signalWatcher = try SignalWatcher(loop: loop, signals: WarmRunner.stopSignals) { [unowned self] signal in
            stopOnSignal(signal)
        }
        try deadlineTimer.arm(milliseconds: Int(configuration.timeoutMilliseconds)) { [unowned self] in
            ledger.stop(.timedOut)
            sendWhatMayGo()
        }
        try scheduleProgress()
        loop.nextTick { [unowned self] in sendWhatMayGo() }
    }

    var elapsedMilliseconds: Int64 { loop.monotonicMilliseconds - startedAt }

    // MARK: calls

    /// Starts calls while there is room and the ledger has members that may go, arms the resume
    /// timer when sending is paused, and ends the job when nothing is left.
    private func sendWhatMayGo() {
        guard !finished else { return }
        let now = loop.monotonicMilliseconds
        while ledger.callsInFlight < configuration.concurrency, let batch = ledger.nextBatch(now: now) {
            start(batch, now: now)
        }
        if ledger.fatalProblem != nil { abandonCallsInFlight() }
        if ledger.isFinished { return finish() }
        if ledger.callsInFlight < configuration.concurrency, let resumesAt = ledger.resumesAt, resumesAt > now {
            do {
                try resumeTimer.arm(milliseconds: Int(resumesAt - now)) { [unowned self] in sendWhatMayGo() }
            } catch {
                loop.nextTick { [unowned self] in sendWhatMayGo() }
            }
        }
    }

    private func start(_ batch: WarmLedger.Batch, now: Int64) {
        let callMilliseconds = WarmMembersCall.connectTimeoutMilliseconds(jobTimeLeft: deadline - now)
        let request = HTTPClientRequest(
            method: "POST", url: configuration.service + WarmMembersCall.path,
            headers: [("content-type", "application/json"), ("connect-protocol-version", "1"), ("connect-timeout-ms", "\(callMilliseconds)")],
            body: WarmMembersCall.body(campaign: configuration.campaign, members: batch.members, force: configuration.force),
            version: configuration.usesTLS ? .http2OverTLS : .http2PriorKnowledge,
            connectTimeoutMilliseconds: WarmMembersCall.connectMilliseconds,
            totalTimeoutMilliseconds: Int(callMilliseconds + WarmMembersCall.transferSlackMilliseconds),
            caCertificateFile: configuration.caCertificatePath)
        do {
            let multi = try CurlMulti(loop: loop)
            let transfer = try multi.start(request) { [unowned self] result in
                // A connection made by any call, this one or one still running, shows the
                // service is there: the ledger judges a failure to connect by it.
                if calls.values.contains(where: { $0.transfer.hasConnection }) { ledger.recordConnectionToService() }
                ledger.record(WarmMembersCall.outcome(result), for: batch, now: loop.monotonicMilliseconds)
                // This runs inside the multi handle's own round of finished transfers: it is
                // freed, and new calls start, on the next tick.
                loop.nextTick { [unowned self] in
                    calls[batch.id] = nil
                    sendWhatMayGo()
                }
            }
            calls[batch.id] = (multi, transfer)
        } catch {
            // curl refused to set the request up; retried after a pause like any failed call.
            ledger.record(.retryable(code: "internal", message: "\(error)", retryAfterSeconds: nil), for: batch, now: now)
        }
    }

    private func abandonCallsInFlight() {
        for call in calls.values { call.transfer.cancel() }
        calls.removeAll()
        ledger.abandonCallsInFlight()
    }

    // MARK: stopping

    /// The first signal stops new calls and lets the ones in flight finish; a second gives up
    /// on those too.
    private func stopOnSignal(_ signal: Int32) {
        signalsReceived += 1
        let name = signal == SIGTERM ? "SIGTERM" : "SIGINT"
        if signalsReceived == 1 {
            ledger.stop(.interrupted)
            let inFlight = ledger.callsInFlight
            if inFlight > 0 {
                say("warm: \(name): sending no more; waiting for \(inFlight) call(s) in flight (again to abandon them)")
            }
        } else {
            say("warm: \(name) again: abandoning the calls in flight")
            abandonCallsInFlight()
        }
        sendWhatMayGo()
    }

    private func finish() {
        finished = true
        resumeTimer.cancel()
        deadlineTimer.cancel()
        progressTimer.cancel()
        if stderrIsTerminal { StandardError.write(ProgressText.bar(progress) + "\n") }
        signalWatcher = nil
        loop.stop()
    }

    // MARK: progress

    private var progress: WarmProgress { ledger.progress(elapsedMilliseconds: elapsedMilliseconds) }

    /// A terminal gets its bar redrawn a few times a second; anything else a line per interval.
    private func scheduleProgress() throws {
        let interval = stderrIsTerminal ? 250 : configuration.progressIntervalMilliseconds
        try progressTimer.arm(milliseconds: interval) { [unowned self] in
            StandardError.write(stderrIsTerminal ? ProgressText.bar(progress) : ProgressText.line(progress) + "\n")
            try? scheduleProgress()
        }
    }

    /// A message on its own line (over the bar on a terminal; the next redraw puts it back).
    private func say(_ message: String) {
        StandardError.write((stderrIsTerminal ? "\r\u{1B}[K" : "") + message + "\n")
    }
}

enum StandardError {
    /// Progress and summary go to stderr, unbuffered; a write that fails (a closed pipe) is dropped.
    static func write(_ text: String) {
        _ = writeAll(Array(text.utf8)[...], to: STDERR_FILENO)
    }
}

/// Writes every byte to `descriptor`, resuming after short writes and signals; the errno of
/// what failed (EIO when nothing could be written), nil when all went.
func writeAll(_ bytes: ArraySlice<UInt8>, to descriptor: Int32) -> Int32? {
    var rest = bytes
    while !rest.isEmpty {
        let written = rest.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        if written > 0 {
            rest = rest.dropFirst(written)
        } else if written < 0, errno == EINTR {
            continue
        } else {
            return written < 0 ? errno : EIO
        }
    }
    return nil
}
