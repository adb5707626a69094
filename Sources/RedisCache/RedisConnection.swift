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
/// Enforces connect and command timeouts and reconnects with backoff. Loop thread only.
public final class RedisConnection {
    private let loop: Loop
    private let configuration: RedisConfiguration
    private let logger: Logger
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var connected = false
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

    public var isConnected: Bool { connected }

    /// The loop's clock, for callers checking deadlines in replies.
    public var nowMilliseconds: Int64 { loop.nowMilliseconds }

    /// Starts connecting (and keeps reconnecting until `close`).
    public func start() {
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
        connectTimer.arm(milliseconds: configuration.connectTimeoutMilliseconds) { [unowned self] in
            guard !connected else { return }
            dropContext(reason: "connect timed out after \(self.configuration.connectTimeoutMilliseconds) ms")
        }
        // Queued now, sent once connected, answered before anything sent later.
        if let password = configuration.password { enqueue([Array("AUTH".utf8), Array(password.utf8)], completion: authReply) }
        if configuration.database != 0 { enqueue([Array("SELECT".utf8), Array(String(configuration.database).utf8)], completion: authReply) }
    }

    /// Closes for good; pending commands fail with `connectionLost`.
    public func close() {
        closed = true
        connectTimer.cancel()
        sweepTimer.cancel()
        if let context {
            self.context = nil
            redisAsyncFree(context)
        }
        failInflight()
    }

    /// Sends one command (binary-safe arguments). Fails at once when not connected.
    public func send(_ arguments: [String], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        send(arguments.map { Array($0.utf8) }, completion: completion)
    }

    public func send(_ arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        guard connected else { return completion(.failure(.notConnected)) }
        enqueue(arguments, completion: completion)
    }

    private func enqueue(_ arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        guard let context, !closed else { return completion(.failure(.notConnected)) }
        let command = PendingCommand(deadline: loop.nowMilliseconds + Int64(configuration.commandTimeoutMilliseconds), completion: completion)
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
        connectTimer.cancel()
        guard ok else {
            // hiredis frees the context after this callback returns.
            context = nil
            failInflight()
            scheduleReconnect(reason: reason ?? "connect failed")
            return
        }
        connected = true
        reconnectDelay = configuration.reconnectBackoffMilliseconds.first
        // Commands queued while connecting (AUTH, SELECT) get their full timeout from now.
        let deadline = loop.nowMilliseconds + Int64(configuration.commandTimeoutMilliseconds)
        for command in inflight[inflightHead...] { command.deadline = deadline }
        logger.info("connected to Redis", metadata: ["redis": "\(configuration.host):\(configuration.port)"])
    }

    private func disconnected() {
        // hiredis frees the context after this callback returns (or we are inside redisAsyncFree).
        context = nil
        connected = false
        failInflight()
        if !closed { scheduleReconnect(reason: "disconnected") }
    }

    private func authReply(_ result: Result<RedisReply, RedisError>) {
        if case .success(.error(let message)) = result {
            logger.error("Redis rejected the connection set-up (check REDIS_URL)", metadata: ["error": "\(message)"])
        }
    }

    // MARK: timeouts and reconnects

    /// Frees the context (if any) and schedules the next attempt. Whatever timer called this,
    /// the connect timer is re-armed for the reconnect, so no path can leave us unscheduled.
    private func dropContext(reason: String) {
        logger.warning("dropping Redis connection", metadata: ["reason": "\(reason)"])
        connectTimer.cancel()
        connected = false
        if let context {
            self.context = nil
            // Fails every pending callback with a nil reply, then (if connected) calls disconnected().
            redisAsyncFree(context)
        }
        failInflight()
        scheduleReconnect(reason: reason)
    }

    private func scheduleReconnect(reason: String) {
        guard !closed, !connectTimer.isArmed else { return }
        logger.warning("Redis unavailable; retrying", metadata: ["reason": "\(reason)", "retry_ms": "\(reconnectDelay)"])
        let delay = reconnectDelay
        reconnectDelay = min(reconnectDelay * 2, configuration.reconnectBackoffMilliseconds.limit)
        connectTimer.arm(milliseconds: delay) { [unowned self] in start() }
    }

    private func armSweep() {
        sweepTimer.arm(milliseconds: max(10, configuration.commandTimeoutMilliseconds / 4)) { [unowned self] in sweep() }
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
        if connected, inflight[inflightHead].deadline <= loop.nowMilliseconds {
            let timeout = configuration.commandTimeoutMilliseconds
            for command in inflight[inflightHead...] { command.complete(.failure(.timedOut(milliseconds: timeout))) }
            inflight.removeAll()
            inflightHead = 0
            dropContext(reason: "command timed out after \(timeout) ms")
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
