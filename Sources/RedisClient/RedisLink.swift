internal import CHiredis
internal import CShims
import EventLoop
import Logging

/// Why a link's hiredis context ended.
enum RedisLinkLoss {
    /// The TCP connection could not be made (hiredis' reason).
    case connectFailed(String)
    /// Redis closed the connection, or reading from it failed.
    case closedByServer
    /// The set-up (connect and the owner's first commands) did not finish within the connect
    /// timeout. Also reported when the context had already gone during the set-up.
    case setUpTimedOut
    /// The owner dropped it (`drop`, `dropSoon`): the owner knows why.
    case dropped
}

/// What a `RedisLink` tells its owner, on the loop.
protocol RedisLinkDelegate: AnyObject {
    /// A new context is attached and connecting: queue the set-up commands now (hiredis sends
    /// them once connected, and Redis answers them in order).
    func linkOpened()
    /// The TCP connection is up.
    func linkConnected()
    /// The context is unusable from now on; a reconnect is scheduled (unless closed). When the
    /// link drops the context itself, this comes before hiredis frees it (so nothing may be
    /// sent on it), and the callbacks hiredis then fails with NULL replies no longer reach
    /// anything that recovers its owner from the context's `data`. When Redis closed it,
    /// hiredis has already failed the pending callbacks. Idempotent on the owner's side: it may
    /// come again without a context (`setUpTimedOut` after a disconnect during the set-up).
    func linkDown(_ loss: RedisLinkLoss)
}

/// The one owner of a `redisAsyncContext*` on a loop, shared by `RedisConnection` and
/// `RedisInvalidationListener`: connects (the connect timeout covers the owner's set-up
/// commands too), attaches libevent, frees the context on one path (`data` cleared first), and
/// reconnects with backoff until `close`. What is sent and what the replies mean is the owner's.
///
/// hiredis frees the context itself after a failed connect or a disconnect; the link frees it
/// on `drop`, `dropSoon` and `close`. Loop-confined.
final class RedisLink {
    /// hiredis' reply callback: (context, reply or NULL, privdata).
    typealias ReplyCallback = @convention(c) (UnsafeMutablePointer<redisAsyncContext>?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void

    private let loop: Loop
    private let configuration: RedisConfiguration
    private let logger: Logger
    /// Unowned: the owner holds the link and closes it in its own `close`/`deinit`, after which
    /// the link never calls it (every path checks `closed` first).
    unowned var delegate: (any RedisLinkDelegate)?
    /// The context while it is ours to use; `data` points to this link, unretained.
    private(set) var context: UnsafeMutablePointer<redisAsyncContext>?
    /// TCP connected; commands are being written.
    private(set) var isConnected = false
    private var closed = false
    /// Counts contexts, so a drop deferred to the next tick only hits the context it was meant for.
    private var generation = 0
    private var reconnectDelay: Int
    /// Drives both the set-up deadline and the reconnect delay; captures `self` unowned
    /// (`close`, also run by `deinit`, cancels it).
    private let connectTimer: Timer

    init(loop: Loop, configuration: RedisConfiguration, logger: Logger) throws {
        self.loop = loop
        self.configuration = configuration
        self.logger = logger
        reconnectDelay = configuration.reconnectBackoffMilliseconds.first
        connectTimer = try Timer(loop: loop)
    }

    deinit { close() }

    /// Connects, unless closed or already connecting; failures are retried with backoff.
    func start() {
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
            context.pointee.data = nil
            redisAsyncFree(context)
            scheduleReconnect(reason: "redisLibeventAttach failed")
            return
        }
        redisAsyncSetConnectCallback(context) { context, status in
            RedisLink.link(of: context)?.connectFinished(ok: status == REDIS_OK)
        }
        redisAsyncSetDisconnectCallback(context) { context, _ in
            RedisLink.link(of: context)?.disconnected()
        }
        self.context = context
        generation &+= 1
        // The connect timeout covers the whole set-up: a server that accepts the connection
        // and never answers is as unusable as one that refuses it.
        armConnectTimer(milliseconds: configuration.connectTimeoutMilliseconds) { [unowned self] in setUpTimedOut() }
        delegate?.linkOpened()
    }

    /// The owner's set-up was answered: the set-up deadline is off, and the next outage
    /// starts again from the shortest reconnect delay.
    func setUpFinished() {
        connectTimer.cancel()
        reconnectDelay = configuration.reconnectBackoffMilliseconds.first
    }

    /// Queues one command (binary-safe arguments) on the current context. False when there is
    /// none or hiredis refused it (the context is being torn down); then hiredis did not take
    /// `privdata` and will never call `callback` for it.
    func send(_ arguments: [[UInt8]], callback: ReplyCallback, privdata: UnsafeMutableRawPointer?) -> Bool {
        guard let context, !closed else { return false }
        // hiredis formats the command into its own buffer during the call: our buffers need only live that long.
        let rc = withArgv(arguments) { argv, lengths in
            redisAsyncCommandArgv(context, callback, privdata, Int32(arguments.count), argv, lengths)
        }
        return rc == REDIS_OK
    }

    /// Drops the context now and schedules a reconnect. Not from inside a hiredis callback
    /// (use `dropSoon`). Whatever timer called this, the connect timer is re-armed for the
    /// reconnect, so no path can leave the link unscheduled.
    func drop(reason: String) {
        guard !closed else { return }
        logger.warning("dropping Redis connection", metadata: ["reason": "\(reason)"])
        connectTimer.cancel()
        if let context = detach() {
            delegate?.linkDown(.dropped)
            redisAsyncFree(context)
        }
        scheduleReconnect(reason: reason)
    }

    /// `drop` on the next tick, for a decision taken inside a hiredis callback; nothing happens
    /// if by then this context is gone (closed, dropped, or freed by hiredis).
    func dropSoon(reason: String) {
        let target = generation
        loop.nextTick { [self] in
            guard !closed, context != nil, generation == target else { return }
            drop(reason: reason)
        }
    }

    /// Closes for good, silently (the owner reports its own state). Idempotent.
    func close() {
        closed = true
        connectTimer.cancel()
        if let context = detach() { redisAsyncFree(context) }
    }

    /// Takes the context out of use before it is freed: `data` cleared, so neither the
    /// disconnect callback nor the NULL-reply callbacks hiredis runs while freeing reach anyone.
    private func detach() -> UnsafeMutablePointer<redisAsyncContext>? {
        guard let context else { return nil }
        self.context = nil
        isConnected = false
        context.pointee.data = nil
        return context
    }

    // MARK: hiredis callbacks

    private static func link(of context: UnsafePointer<redisAsyncContext>?) -> RedisLink? {
        guard let data = context?.pointee.data else { return nil }
        return Unmanaged<RedisLink>.fromOpaque(data).takeUnretainedValue()
    }

    private func connectFinished(ok: Bool) {
        guard ok else {
            let reason = context?.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
            connectTimer.cancel()
            // hiredis frees the context after this callback returns, failing the queued
            // commands with NULL replies: with `data` cleared, those reach nothing of ours
            // that goes through the context.
            _ = detach()
            delegate?.linkDown(.connectFailed(reason))
            scheduleReconnect(reason: reason)
            return
        }
        isConnected = true
        delegate?.linkConnected()
    }

    private func disconnected() {
        // hiredis frees the context after this callback returns (it failed the pending
        // callbacks with NULL replies just before).
        context = nil
        isConnected = false
        delegate?.linkDown(.closedByServer)
        if !closed { scheduleReconnect(reason: "disconnected") }
    }

    // MARK: timeouts and reconnects

    private func setUpTimedOut() {
        delegate?.linkDown(.setUpTimedOut)
        drop(reason: "no answer to the connection set-up within \(configuration.connectTimeoutMilliseconds) ms")
    }

    private func scheduleReconnect(reason: String) {
        guard !closed, !connectTimer.isArmed else { return }
        logger.warning("Redis unavailable; retrying", metadata: ["reason": "\(reason)", "retry_ms": "\(reconnectDelay)"])
        let delay = reconnectDelay
        reconnectDelay = min(reconnectDelay * 2, configuration.reconnectBackoffMilliseconds.limit)
        armConnectTimer(milliseconds: delay) { [unowned self] in start() }
    }

    /// Arming a libevent timer fails only when out of memory; then the action runs on the next
    /// tick instead.
    private func armConnectTimer(milliseconds: Int, _ action: @escaping () -> Void) {
        do {
            try connectTimer.arm(milliseconds: milliseconds, action)
        } catch {
            logger.error("could not arm the Redis connect timer", metadata: ["error": "\(error)"])
            loop.nextTick(action)
        }
    }
}

extension RedisConfiguration {
    /// AUTH and SELECT from the URL: the first commands on every new connection.
    var setUpCommands: [[[UInt8]]] {
        var commands: [[[UInt8]]] = []
        if let password { commands.append([Array("AUTH".utf8), Array(password.utf8)]) }
        if database != 0 { commands.append([Array("SELECT".utf8), Array(String(database).utf8)]) }
        return commands
    }
}

extension RedisReply {
    /// A copy of a hiredis reply.
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
func withArgv<R>(_ arguments: [[UInt8]], _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
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
