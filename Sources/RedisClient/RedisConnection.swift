internal import CHiredis
internal import CShims
import EventLoop
import Logging

public enum RedisReply: Equatable, Sendable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case array([RedisReply])
}

public enum RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    case notConnected
    case timedOut(milliseconds: Int)
    case connectionLost
    /// Redis' error reply, verbatim: for debug logs (`rawReplyForLog`), never for callers.
    case server(String)

    /// Safe to show a caller: an error reply is summarised by its code (`RedisErrorSummary`),
    /// never quoted, since Redis may echo scripts, keys or arguments in it.
    public var description: String {
        switch self {
        case .notConnected: return "not connected to Redis"
        case .timedOut(let ms): return "Redis did not answer within \(ms) ms"
        case .connectionLost: return "connection to Redis lost"
        case .server(let message): return "Redis: \(RedisErrorSummary.summary(of: message))"
        }
    }

    /// The error reply as Redis sent it, truncated, for a debug log; nil for the other cases.
    public var rawReplyForLog: String? {
        guard case .server(let message) = self else { return nil }
        return RedisErrorSummary.truncated(message)
    }
}

/// Summaries of Redis error replies, named after the reply's error code.
public enum RedisErrorSummary {
    /// Longest piece of a raw reply that goes into a log line.
    public static let maxLoggedCharacters = 200

    private static let phrases: [Substring: String] = [
        "OOM": "out of memory", "BUSY": "busy running a script", "LOADING": "loading its data set",
        "READONLY": "a read-only replica", "MASTERDOWN": "its master is down", "MISCONF": "cannot persist to disk",
        "NOAUTH": "authentication required", "WRONGPASS": "password refused", "NOPERM": "permission denied",
        "NOSCRIPT": "script not loaded", "EXECABORT": "transaction aborted", "WRONGTYPE": "a key holds the wrong type",
        "CROSSSLOT": "keys in different cluster slots", "CLUSTERDOWN": "cluster down", "MOVED": "cluster slot moved",
        "ASK": "cluster slot migrating", "TRYAGAIN": "cluster busy, try again",
    ]

    /// A short phrase for an error reply: its code's meaning, or "error CODE" for a code without
    /// one here, or "unexpected reply". A script error (`ERR Error running script …`) is named by
    /// the code inside it when it carries one (older Redis wraps an OOM that way).
    public static func summary(of reply: String) -> String {
        let words = reply.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "-" || $0 == "\n" })
        guard let first = words.first, isCode(first) else { return "unexpected reply" }
        if let phrase = phrases[first] { return phrase }
        if first == "ERR", let inner = words.dropFirst().first(where: { phrases[$0] != nil }), let phrase = phrases[inner] { return phrase }
        if first == "ERR", reply.contains("script") { return "script error" }
        return first == "ERR" ? "error" : "error \(first)"
    }

    public static func truncated(_ text: String) -> String {
        text.count > maxLoggedCharacters ? String(text.prefix(maxLoggedCharacters)) + "…" : text
    }

    /// Redis error codes are one short upper-case word.
    private static func isCode(_ word: Substring) -> Bool {
        (2...16).contains(word.utf8.count) && word.utf8.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }
    }
}

/// How one command sent to Redis ended, for metrics.
public enum RedisCommandOutcome: String, Sendable {
    case ok
    /// An error reply, or the connection was lost before the answer.
    case error
    /// No answer within the command timeout.
    case timeout
}

/// Hooks for metrics: what a connection reports as it goes. Called on the connection's loop.
public struct RedisConnectionObserver {
    /// Every command that reached hiredis (handshake and health PINGs included), with the time
    /// from sending to its end. Commands refused at once because the connection is not ready
    /// are not reported: the readiness change already was.
    public var commandFinished: ((RedisCommandOutcome, _ latencySeconds: Double) -> Void)?
    /// The connection became ready (true) or stopped being ready (false).
    public var readinessChanged: ((Bool) -> Void)?

    public init(commandFinished: ((RedisCommandOutcome, _ latencySeconds: Double) -> Void)? = nil,
                readinessChanged: ((Bool) -> Void)? = nil) {
        self.commandFinished = commandFinished
        self.readinessChanged = readinessChanged
    }
}

/// One hiredis async connection attached to a loop, through a `RedisLink` (which owns the
/// `redisAsyncContext*`, the connect timeout and the reconnects with backoff). Enforces command
/// timeouts (on the monotonic clock).
///
/// The connection is *ready* only once Redis answered the set-up handshake (AUTH and SELECT from
/// the URL, then PING): until then, and from the moment a command is overdue, `send` fails at
/// once instead of queueing behind a server that refuses or does not answer. A ready connection
/// with nothing to do PINGs every `healthCheckIntervalMilliseconds`, so a Redis that hangs (it
/// accepts and never answers) turns it unready even when no caller asks anything. Loop-confined.
public final class RedisConnection {
    private let loop: Loop
    private let configuration: RedisConfiguration
    private let logger: Logger
    private let link: RedisLink
    /// The handshake was answered and no command timed out since.
    private var ready = false {
        didSet {
            guard ready != oldValue else { return }
            if ready { unreadyReason = nil }
            observer?.readinessChanged?(ready)
        }
    }
    /// Why the connection is not ready (nil while it is), for readiness probes.
    private var unreadyReason: String? = "connecting to Redis"
    /// Told of every command's end and every readiness change; see `RedisConnectionObserver`.
    public var observer: RedisConnectionObserver?
    /// Redis refused a step of this connection's handshake; it is dropped once, however many
    /// queued steps it also refuses.
    private var handshakeRefused = false
    private var closed = false
    /// Both timers capture `self` unowned (a weak reference would slow every retain of this
    /// object on the request path); `close()`, also run by `deinit`, cancels them.
    private let sweepTimer: Timer
    private let healthTimer: Timer
    /// When the last command was sent (monotonic ms): a command sent since the last health check
    /// is checked by the sweep already, so the idle PING is only for quiet connections.
    private var lastActivity: Int64 = 0
    /// Commands sent and not yet answered, oldest first (Redis answers in order).
    private var inflight: [PendingCommand] = []
    private var inflightHead = 0


    public init(loop: Loop, configuration: RedisConfiguration, logger: Logger) throws {
        self.loop = loop
        self.configuration = configuration
        self.logger = logger
        link = try RedisLink(loop: loop, configuration: configuration, logger: logger)
        sweepTimer = try Timer(loop: loop)
        healthTimer = try Timer(loop: loop)
        link.delegate = self
    }

    deinit { close() }

    /// Redis answered the handshake, no command timed out since, and none is overdue now:
    /// commands are accepted.
    public var isReady: Bool { notReadyReason == nil }

    /// nil while ready; else why not, for a readiness probe ("Redis not answering within 500 ms").
    public var notReadyReason: String? {
        guard ready else { return unreadyReason ?? "not connected to Redis" }
        return hasOverdueCommand ? notAnswering(configuration.commandTimeoutMilliseconds) : nil
    }

    private func notAnswering(_ milliseconds: Int) -> String { "Redis not answering within \(milliseconds) ms" }

    /// The oldest unanswered command is past its deadline (the sweep will drop the connection
    /// shortly; until then nothing new should queue behind it).
    private var hasOverdueCommand: Bool {
        skipAnswered()
        return link.isConnected && inflightHead < inflight.count && inflight[inflightHead].deadline <= loop.monotonicMilliseconds
    }

    /// Moves past the answered commands at the head of the queue.
    private func skipAnswered() {
        while inflightHead < inflight.count, inflight[inflightHead].isDone { inflightHead += 1 }
    }

    /// Starts connecting (and keeps reconnecting until `close`).
    public func start() {
        loop.assertInLoop()
        guard !closed else { return }
        link.start()
    }

    /// Closes for good; pending commands fail with `connectionLost`.
    public func close() {
        closed = true
        unreadyReason = "closed"
        sweepTimer.cancel()
        healthTimer.cancel()
        ready = false
        // Freeing the context fails its pending callbacks (nil replies) synchronously.
        link.close()
        failInflight()
    }

    /// Sends one command (binary-safe arguments). Fails at once when the connection is not ready.
    public func send(_ arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        loop.assertInLoop()
        guard ready, !hasOverdueCommand else { return completion(.failure(.notConnected)) }
        enqueue(arguments, completion: completion)
    }

    private func enqueue(_ arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        guard link.context != nil, !closed else { return completion(.failure(.notConnected)) }
        let now = loop.monotonicMilliseconds
        lastActivity = now
        let command = PendingCommand(deadline: now + Int64(configuration.commandTimeoutMilliseconds), sentAt: now, loop: loop,
                                     observer: observer?.commandFinished, completion: completion)
        // Each command's callback owns one retain of its PendingCommand: hiredis calls it
        // exactly once (a reply, or NULL when the context is freed). This connection never
        // subscribes, so hiredis never hands a reply to a stale callback copy.
        let sent = link.send(arguments, callback: { _, reply, privdata in
            guard let privdata else { return }
            let command = Unmanaged<PendingCommand>.fromOpaque(privdata).takeRetainedValue()
            command.complete(reply.map { .success(RedisReply(parsing: $0.assumingMemoryBound(to: redisReply.self))) } ?? .failure(.connectionLost))
        }, privdata: Unmanaged.passRetained(command).toOpaque())
        guard sent else {
            // hiredis did not take the callback: balance the retain it would have released.
            Unmanaged.passUnretained(command).release()
            return completion(.failure(.notConnected))
        }
        inflight.append(command)
        if !sweepTimer.isArmed { armSweep() }
    }

    /// True for an accepted handshake step. A refusal (wrong password, no such database) leaves
    /// the connection unready; it is dropped and retried with backoff, so fixing Redis recovers.
    @discardableResult
    private func handshakeReply(_ result: Result<RedisReply, RedisError>) -> Bool {
        switch result {
        case .success(.error(let message)):
            guard !handshakeRefused else { return false }
            handshakeRefused = true
            unreadyReason = "Redis refused the connection set-up (check REDIS_URL)"
            logger.error("Redis rejected the connection set-up (check REDIS_URL)", metadata: ["error": "\(message)"])
            // Not from inside hiredis' reply callback: drop on the next tick.
            link.dropSoon(reason: "connection set-up rejected")
            return false
        case .success:
            return true
        case .failure:
            return false
        }
    }

    // MARK: timeouts

    private func armSweep() {
        do {
            try sweepTimer.arm(milliseconds: max(10, configuration.commandTimeoutMilliseconds / 4)) { [unowned self] in sweep() }
        } catch {
            logger.error("could not arm the Redis command timer", metadata: ["error": "\(error)"])
        }
    }

    /// Oldest first: the first unanswered command past its deadline means the server is stuck.
    private func sweep() {
        skipAnswered()
        if inflightHead > 64, inflightHead * 2 > inflight.count {
            inflight.removeFirst(inflightHead)
            inflightHead = 0
        }
        guard inflightHead < inflight.count else {
            inflight.removeAll(keepingCapacity: true)
            inflightHead = 0
            return
        }
        // Before the connection is up, the connect timeout governs (AUTH/SELECT wait in the queue).
        if link.isConnected, inflight[inflightHead].deadline <= loop.monotonicMilliseconds {
            let timeout = configuration.commandTimeoutMilliseconds
            // Not ready from now on: a completion that sends again fails at once rather than
            // queueing on the context about to be freed.
            ready = false
            unreadyReason = notAnswering(timeout)
            for command in inflight[inflightHead...] { command.complete(.failure(.timedOut(milliseconds: timeout))) }
            inflight.removeAll()
            inflightHead = 0
            if !closed { link.drop(reason: "no answer within \(timeout) ms") }
            return
        }
        armSweep()
    }

    /// While ready, PINGs whenever nothing was sent for an interval; the sweep judges the
    /// answer like any command's.
    private func armHealthCheck() {
        let interval = configuration.healthCheckIntervalMilliseconds
        do {
            try healthTimer.arm(milliseconds: interval) { [unowned self] in
                guard ready, !closed else { return }
                if loop.monotonicMilliseconds - lastActivity >= Int64(interval) {
                    enqueue([Array("PING".utf8)]) { _ in }
                }
                armHealthCheck()
            }
        } catch {
            logger.error("could not arm the Redis health check timer", metadata: ["error": "\(error)"])
        }
    }

    private func failInflight() {
        let pending = inflight[inflightHead...]
        inflight = []
        inflightHead = 0
        for command in pending { command.complete(.failure(.connectionLost)) }
    }
}

extension RedisConnection: RedisLinkDelegate {
    func linkOpened() {
        // Queued now, sent once connected, answered in order before anything sent later. The
        // completions hold `self` strongly: freeing the context (close, or a drop) fails them
        // synchronously, so they must never reach a deinitialising object; `close()` ends them.
        handshakeRefused = false
        for command in configuration.setUpCommands { enqueue(command, completion: { [self] in handshakeReply($0) }) }
        enqueue([Array("PING".utf8)]) { [self] result in
            // A refused AUTH/SELECT may still let PING through: such a connection is not ready.
            guard handshakeReply(result), !handshakeRefused, !closed else { return }
            link.setUpFinished()
            ready = true
            armHealthCheck()
            logger.info("connected to Redis", metadata: ["redis": "\(configuration.host):\(configuration.port)"])
        }
    }

    func linkConnected() {
        // The handshake queued while connecting gets its full command timeout from now.
        let deadline = loop.monotonicMilliseconds + Int64(configuration.commandTimeoutMilliseconds)
        for command in inflight[inflightHead...] { command.deadline = deadline }
    }

    func linkDown(_ loss: RedisLinkLoss) {
        ready = false
        switch loss {
        case .connectFailed(let reason): unreadyReason = "cannot connect to Redis: \(reason)"
        case .closedByServer: unreadyReason = "Redis closed the connection"
        case .setUpTimedOut: unreadyReason = notAnswering(configuration.connectTimeoutMilliseconds)
        case .dropped: break  // the reason was set where the drop was decided
        }
        failInflight()
    }
}

/// A sent command awaiting its reply; completes exactly once (reply, timeout or disconnect).
/// It holds the observer itself, not the connection: it may complete while the connection is
/// being deinitialised.
private final class PendingCommand {
    var deadline: Int64
    private let sentAt: Int64
    private let loop: Loop
    private let observer: ((RedisCommandOutcome, Double) -> Void)?
    private var completion: ((Result<RedisReply, RedisError>) -> Void)?

    init(deadline: Int64, sentAt: Int64, loop: Loop, observer: ((RedisCommandOutcome, Double) -> Void)?,
         completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        self.deadline = deadline
        self.sentAt = sentAt
        self.loop = loop
        self.observer = observer
        self.completion = completion
    }

    var isDone: Bool { completion == nil }

    func complete(_ result: Result<RedisReply, RedisError>) {
        guard let completion else { return }
        self.completion = nil
        if let observer {
            let outcome: RedisCommandOutcome
            switch result {
            case .success(.error), .failure(.connectionLost), .failure(.notConnected), .failure(.server): outcome = .error
            case .failure(.timedOut): outcome = .timeout
            case .success: outcome = .ok
            }
            observer(outcome, Double(max(0, loop.monotonicMilliseconds - sentAt)) / 1000)
        }
        completion(result)
    }
}
