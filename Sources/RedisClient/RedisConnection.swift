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
    case server(String)

    public var description: String {
        switch self {
        case .notConnected: return "not connected to Redis"
        case .timedOut(let ms): return "Redis did not answer within \(ms) ms"
        case .connectionLost: return "connection to Redis lost"
        case .server(let message): return "Redis error: \(message)"
        }
    }
}

/// One hiredis async connection attached to a loop. Owns the `redisAsyncContext*` (hiredis frees
/// it itself after a failed connect or a disconnect; we free it on timeouts and in `close`).
/// Enforces connect and command timeouts (on the monotonic clock) and reconnects with backoff.
///
/// The connection is *ready* only once Redis answered the set-up handshake (AUTH and SELECT from
/// the URL, then PING): until then, and from the moment a command times out, `send` fails at
/// once instead of queueing behind a server that refuses or does not answer. Loop-confined.
public final class RedisConnection {
    private let loop: Loop
    private let configuration: RedisConfiguration
    private let logger: Logger
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    /// TCP connected; commands may be written (the handshake goes first).
    private var connected = false
    /// The handshake was answered: callers' commands are accepted.
    private var ready = false
    /// Redis refused a step of this connection's handshake; it is dropped once, however many
    /// queued steps it also refuses.
    private var handshakeRefused = false
    private var closed = false
    private var reconnectDelay: Int
    /// Both timers capture `self` unowned (a weak reference would slow every retain of this
    /// object on the request path); `close()`, also run by `deinit`, cancels them.
    private let connectTimer: Timer
    private let sweepTimer: Timer
    /// Commands sent and not yet answered, oldest first (Redis answers in order).
    private var inflight: [PendingCommand] = []
    private var inflightHead = 0


    public init(loop: Loop, configuration: RedisConfiguration, logger: Logger) throws {
        self.loop = loop
        self.configuration = configuration
        self.logger = logger
        reconnectDelay = configuration.reconnectBackoffMilliseconds.first
        connectTimer = try Timer(loop: loop)
        sweepTimer = try Timer(loop: loop)
    }

    deinit { close() }

    /// Redis answered the handshake and no command has timed out since: commands are accepted.
    public var isReady: Bool { ready }

    /// Starts connecting (and keeps reconnecting until `close`).
    public func start() {
        loop.assertInLoop()
        guard !closed, context == nil else { return }
        guard let context = redisAsyncConnect(configuration.host, Int32(configuration.port)) else {
            scheduleReconnect(reason: "redisAsyncConnect returned nothing")
            return
        }
        if context.pointee.err != 0 {
            let reason = context.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
            redisAsyncFree(context)
            scheduleReconnect(reason: reason)
            return
        }
        context.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        guard pe_redis_libevent_attach(context, loop.base) == REDIS_OK else {
            redisAsyncFree(context)
            scheduleReconnect(reason: "redisLibeventAttach failed")
            return
        }
        redisAsyncSetConnectCallback(context) { context, status in
            guard let owner = RedisConnection.owner(of: context) else { return }
            owner.connectFinished(ok: status == REDIS_OK, reason: context?.pointee.errstr.map { String(cString: $0) })
        }
        redisAsyncSetDisconnectCallback(context) { context, _ in
            RedisConnection.owner(of: context)?.disconnected()
        }
        self.context = context
        // The connect timeout covers the whole handshake: a server that accepts the connection
        // and never answers is as unusable as one that refuses it.
        armConnectTimer(milliseconds: configuration.connectTimeoutMilliseconds) { [unowned self] in
            guard !ready else { return }
            dropContext(reason: "no answer to the connection set-up within \(self.configuration.connectTimeoutMilliseconds) ms")
        }
        // Queued now, sent once connected, answered in order before anything sent later. The
        // completions hold `self` strongly: freeing the context (close, or a drop) fails them
        // synchronously, so they must never reach a deinitialising object; `close()` ends them.
        handshakeRefused = false
        if let password = configuration.password { enqueue([Array("AUTH".utf8), Array(password.utf8)], completion: { [self] in handshakeReply($0) }) }
        if configuration.database != 0 { enqueue([Array("SELECT".utf8), Array(String(configuration.database).utf8)], completion: { [self] in handshakeReply($0) }) }
        enqueue([Array("PING".utf8)]) { [self] result in
            // A refused AUTH/SELECT may still let PING through: such a connection is not ready.
            guard handshakeReply(result), !handshakeRefused, !closed else { return }
            connectTimer.cancel()
            ready = true
            reconnectDelay = configuration.reconnectBackoffMilliseconds.first
            logger.info("connected to Redis", metadata: ["redis": "\(configuration.host):\(configuration.port)"])
        }
    }

    /// Closes for good; pending commands fail with `connectionLost`.
    public func close() {
        closed = true
        connectTimer.cancel()
        sweepTimer.cancel()
        freeContext()
        failInflight()
    }

    /// Frees the hiredis context, which fails its pending callbacks (nil replies) and may call
    /// the disconnect callback. `data` is cleared first so no callback reaches this object while
    /// it is closing or being deinitialised.
    private func freeContext() {
        guard let context else { return }
        self.context = nil
        connected = false
        ready = false
        context.pointee.data = nil
        redisAsyncFree(context)
    }

    /// Sends one command (binary-safe arguments). Fails at once when the connection is not ready.
    public func send(_ arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        loop.assertInLoop()
        guard ready else { return completion(.failure(.notConnected)) }
        enqueue(arguments, completion: completion)
    }

    private func enqueue(_ arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        guard let context, !closed else { return completion(.failure(.notConnected)) }
        let command = PendingCommand(deadline: loop.monotonicMilliseconds + Int64(configuration.commandTimeoutMilliseconds), completion: completion)
        // hiredis formats the command into its own buffer during the call: our buffers need only live that long.
        let rc = withArgv(arguments) { argv, lengths in
            redisAsyncCommandArgv(context, { _, reply, privdata in
                guard let privdata else { return }
                let command = Unmanaged<PendingCommand>.fromOpaque(privdata).takeRetainedValue()
                command.complete(reply.map { .success(RedisReply(parsing: $0.assumingMemoryBound(to: redisReply.self))) } ?? .failure(.connectionLost))
            }, Unmanaged.passRetained(command).toOpaque(), Int32(arguments.count), argv, lengths)
        }
        guard rc == REDIS_OK else {
            // hiredis did not take the callback: balance the retain it would have released.
            Unmanaged.passUnretained(command).release()
            return completion(.failure(.notConnected))
        }
        inflight.append(command)
        if !sweepTimer.isArmed { armSweep() }
    }

    // MARK: hiredis callbacks

    private static func owner(of context: UnsafePointer<redisAsyncContext>?) -> RedisConnection? {
        guard let data = context?.pointee.data else { return nil }
        return Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue()
    }

    private func connectFinished(ok: Bool, reason: String?) {
        guard ok else {
            connectTimer.cancel()
            // hiredis frees the context after this callback returns.
            context = nil
            failInflight()
            scheduleReconnect(reason: reason ?? "connect failed")
            return
        }
        connected = true
        // The handshake queued while connecting gets its full command timeout from now.
        let deadline = loop.monotonicMilliseconds + Int64(configuration.commandTimeoutMilliseconds)
        for command in inflight[inflightHead...] { command.deadline = deadline }
    }

    private func disconnected() {
        // hiredis frees the context after this callback returns.
        context = nil
        connected = false
        ready = false
        failInflight()
        if !closed { scheduleReconnect(reason: "disconnected") }
    }

    /// True for an accepted handshake step. A refusal (wrong password, no such database) leaves
    /// the connection unready; it is dropped and retried with backoff, so fixing Redis recovers.
    @discardableResult
    private func handshakeReply(_ result: Result<RedisReply, RedisError>) -> Bool {
        switch result {
        case .success(.error(let message)):
            guard !handshakeRefused else { return false }
            handshakeRefused = true
            logger.error("Redis rejected the connection set-up (check REDIS_URL)", metadata: ["error": "\(message)"])
            // Not from inside hiredis' reply callback: drop on the next tick.
            loop.nextTick { [self] in dropContext(reason: "connection set-up rejected") }
            return false
        case .success:
            return true
        case .failure:
            return false
        }
    }

    // MARK: timeouts and reconnects

    /// Frees the context (if any) and schedules the next attempt. Whatever timer called this,
    /// the connect timer is re-armed for the reconnect, so no path can leave us unscheduled.
    private func dropContext(reason: String) {
        guard !closed else { return }
        logger.warning("dropping Redis connection", metadata: ["reason": "\(reason)"])
        connectTimer.cancel()
        freeContext()
        failInflight()
        scheduleReconnect(reason: reason)
    }

    private func scheduleReconnect(reason: String) {
        guard !closed, !connectTimer.isArmed else { return }
        logger.warning("Redis unavailable; retrying", metadata: ["reason": "\(reason)", "retry_ms": "\(reconnectDelay)"])
        let delay = reconnectDelay
        reconnectDelay = min(reconnectDelay * 2, configuration.reconnectBackoffMilliseconds.limit)
        armConnectTimer(milliseconds: delay) { [unowned self] in start() }
    }

    /// The connect timer drives both the handshake deadline and reconnects. Arming a libevent
    /// timer fails only when out of memory; then the next reconnect is tried at once instead.
    private func armConnectTimer(milliseconds: Int, _ action: @escaping () -> Void) {
        do {
            try connectTimer.arm(milliseconds: milliseconds, action)
        } catch {
            logger.error("could not arm the Redis connect timer", metadata: ["error": "\(error)"])
            loop.nextTick(action)
        }
    }

    private func armSweep() {
        do {
            try sweepTimer.arm(milliseconds: max(10, configuration.commandTimeoutMilliseconds / 4)) { [unowned self] in sweep() }
        } catch {
            logger.error("could not arm the Redis command timer", metadata: ["error": "\(error)"])
        }
    }

    /// Oldest first: the first unanswered command past its deadline means the server is stuck.
    private func sweep() {
        while inflightHead < inflight.count, inflight[inflightHead].isDone { inflightHead += 1 }
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
        if connected, inflight[inflightHead].deadline <= loop.monotonicMilliseconds {
            let timeout = configuration.commandTimeoutMilliseconds
            // Not ready from now on: a completion that sends again fails at once rather than
            // queueing on the context about to be freed.
            ready = false
            for command in inflight[inflightHead...] { command.complete(.failure(.timedOut(milliseconds: timeout))) }
            inflight.removeAll()
            inflightHead = 0
            dropContext(reason: "no answer within \(timeout) ms")
            return
        }
        armSweep()
    }

    private func failInflight() {
        let pending = inflight[inflightHead...]
        inflight = []
        inflightHead = 0
        for command in pending { command.complete(.failure(.connectionLost)) }
    }
}

/// A sent command awaiting its reply; completes exactly once (reply, timeout or disconnect).
private final class PendingCommand {
    var deadline: Int64
    private var completion: ((Result<RedisReply, RedisError>) -> Void)?

    init(deadline: Int64, completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        self.deadline = deadline
        self.completion = completion
    }

    var isDone: Bool { completion == nil }

    func complete(_ result: Result<RedisReply, RedisError>) {
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }
}

private extension RedisReply {
    init(parsing reply: UnsafeMutablePointer<redisReply>) {
        let value = reply.pointee
        func bytes() -> [UInt8] {
            guard let str = value.str else { return [] }
            return str.withMemoryRebound(to: UInt8.self, capacity: value.len) { Array(UnsafeBufferPointer(start: $0, count: value.len)) }
        }
        switch value.type {
        case REDIS_REPLY_STRING: self = .bulk(bytes())
        case REDIS_REPLY_STATUS: self = .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: self = .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            self = .array((0..<value.elements).compactMap { index in value.element?[index].map { RedisReply(parsing: $0) } })
        default: self = .null
        }
    }
}

/// `argv` and `argvlen` over Swift byte arrays for the duration of `body`, in stack scratch
/// space (this runs once per Redis command).
private func withArgv<R>(_ arguments: [[UInt8]], _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
    let total = arguments.reduce(0) { $0 + $1.count }
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { flat in
        withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: arguments.count) { argv in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: arguments.count) { lengths in
                var offset = 0
                for (index, argument) in arguments.enumerated() {
                    let start = flat.baseAddress! + offset
                    argument.withUnsafeBytes { bytes in
                        UnsafeMutableRawPointer(start).copyMemory(from: bytes.baseAddress ?? UnsafeRawPointer(start), byteCount: bytes.count)
                    }
                    argv[index] = UnsafePointer(start)
                    lengths[index] = argument.count
                    offset += argument.count
                }
                return body(argv.baseAddress!, lengths.baseAddress!)
            }
        }
    }
}
