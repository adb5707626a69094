internal import CHiredis
import EventLoop
import Logging

/// What Redis says a tracking client must forget.
public enum RedisInvalidation: Equatable, Sendable {
    /// These keys changed, expired or were evicted.
    case keys([[UInt8]])
    /// Everything: a FLUSHALL/FLUSHDB, or a message too large (or too odd) to read key by key.
    case all
}

/// Bounds on what one invalidation message may make us copy; beyond them it counts as `.all`.
public struct RedisInvalidationLimits: Sendable, Equatable {
    public var maxKeysPerMessage: Int
    public var maxKeyBytes: Int

    public init(maxKeysPerMessage: Int = 100_000, maxKeyBytes: Int = 64 * 1024) {
        self.maxKeysPerMessage = maxKeysPerMessage
        self.maxKeyBytes = maxKeyBytes
    }
}

/// A tracking set-up Redis would refuse, caught at start-up.
public struct RedisTrackingConfigurationError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Redis server-assisted client-side caching in BCAST mode, over one RESP2 connection that
/// redirects its own invalidations to itself:
///
///     CLIENT ID                                              -> :<id>
///     CLIENT TRACKING on REDIRECT <id> BCAST PREFIX <p>...   -> +OK
///     SUBSCRIBE __redis__:invalidate                         -> subscribe confirmation
///
/// Tracking lives and dies with this connection, so `isTracking` is true exactly while Redis
/// will tell us about every change under the prefixes. While it is false (before the first
/// subscription, between a loss and the next subscription) invalidations may be missed: an
/// owner caching values must flush on `false` and cache nothing read before the next `true`.
///
/// The connection (connect timeout, AUTH/SELECT, reconnects with backoff) is a `RedisLink`, as
/// `RedisConnection`'s is. A subscribed connection is quiet while nothing changes, so an
/// interval (`healthCheckIntervalMilliseconds`) after each answer it re-sends the SUBSCRIBE
/// (see `subscribe()` for why not PING); no reply within `commandTimeoutMilliseconds` drops it
/// (tracking lost) and reconnects: a Redis that hangs is noticed within interval + timeout.
///
/// Every hiredis callback of this class gets `privdata` = this object, unretained: the SUBSCRIBE
/// callback is called once per message (and kept by hiredis for the life of the context), so
/// it cannot own a retain. That is safe because the context never outlives this object (`close`,
/// run by `deinit` too, frees it) and callbacks only use `privdata` while the context's `data`
/// is set (the link clears it before freeing). Loop-confined.
public final class RedisInvalidationListener {
    /// Told of every invalidation, on the loop (also while `isTracking` is false: an
    /// invalidation is never wrong to apply).
    public var onInvalidation: ((RedisInvalidation) -> Void)?
    /// Told when tracking starts (true) and the moment it is lost (false), alternately,
    /// starting with true; on the loop. `close()` reports false; a deinit reports nothing.
    public var onTrackingChanged: ((Bool) -> Void)?

    static let channel = Array("__redis__:invalidate".utf8)

    private let loop: Loop
    private let configuration: RedisConfiguration
    private let prefixes: [String]
    private let limits: RedisInvalidationLimits
    private let logger: Logger
    private let link: RedisLink
    /// Health probes and their deadline; captures `self` unowned, cancelled by `close`.
    private let healthTimer: Timer

    private enum Phase {
        /// No usable context.
        case down
        /// Set-up commands in flight (answered in order: `steps`).
        case settingUp
        /// Redis refused a set-up step; the connection is about to be dropped.
        case refused
        /// SUBSCRIBE sent, not yet confirmed.
        case subscribing
        /// Confirmed: Redis tracks for us.
        case subscribed
    }

    private enum Step {
        case credentials
        case clientID
        case tracking
    }

    private var phase = Phase.down
    /// Set-up commands sent and not yet answered, oldest first.
    private var steps: [Step] = []
    private var tracking = false
    private var closed = false
    /// When anything last came in on the subscription (monotonic ms).
    private var lastHeard: Int64 = 0
    /// When the unanswered probe was sent; nil while none is.
    private var probeSentAt: Int64?
    /// SUBSCRIBEs sent (the first and the probes) whose confirmation has not come yet.
    private var unconfirmedSubscribes = 0

    /// `prefixes`: the key prefixes to be told about (none: every key). Redis refuses
    /// prefixes that overlap (one starts another), so such a list is refused here.
    public init(loop: Loop, configuration: RedisConfiguration, prefixes: [String],
                limits: RedisInvalidationLimits = RedisInvalidationLimits(), logger: Logger) throws {
        for (index, prefix) in prefixes.enumerated() {
            for other in prefixes[(index + 1)...] where prefix.utf8.starts(with: other.utf8) || other.utf8.starts(with: prefix.utf8) {
                throw RedisTrackingConfigurationError("tracking prefixes \"\(prefix)\" and \"\(other)\" overlap")
            }
        }
        guard limits.maxKeysPerMessage > 0, limits.maxKeyBytes > 0 else {
            throw RedisTrackingConfigurationError("invalidation limits must be positive")
        }
        self.loop = loop
        self.configuration = configuration
        self.prefixes = prefixes
        self.limits = limits
        self.logger = logger
        link = try RedisLink(loop: loop, configuration: configuration, logger: logger)
        healthTimer = try Timer(loop: loop)
        link.delegate = self
    }

    deinit {
        // Silent: nothing may call out of a deinitialising object.
        closed = true
        healthTimer.cancel()
        link.close()
    }

    /// Redis tracks keys for us and the subscription is confirmed and answering.
    public var isTracking: Bool {
        loop.assertInLoop()
        return tracking
    }

    /// Starts connecting (and keeps reconnecting until `close`).
    public func start() {
        loop.assertInLoop()
        guard !closed else { return }
        link.start()
    }

    /// Closes for good: the connection is freed (no callback reaches this object afterwards)
    /// and, if tracking was on, `onTrackingChanged(false)` is the last call. Idempotent.
    public func close() {
        loop.assertInLoop()
        guard !closed else { return }
        closed = true
        healthTimer.cancel()
        enterDown()
        link.close()
        setTracking(false)
    }

    private var unretainedSelf: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    private func setTracking(_ on: Bool) {
        guard tracking != on else { return }
        tracking = on
        onTrackingChanged?(on)
    }

    private func enterDown() {
        phase = .down
        steps.removeAll()
        healthTimer.cancel()
        probeSentAt = nil
        unconfirmedSubscribes = 0
    }

    // MARK: set-up

    /// The owner of both kinds of callbacks, while its context is still in use.
    private static func listener(_ context: UnsafeMutablePointer<redisAsyncContext>?, _ privdata: UnsafeMutableRawPointer?) -> RedisInvalidationListener? {
        guard context?.pointee.data != nil, let privdata else { return nil }
        return Unmanaged<RedisInvalidationListener>.fromOpaque(privdata).takeUnretainedValue()
    }

    private func sendStep(_ step: Step, _ arguments: [[UInt8]]) {
        let sent = link.send(arguments, callback: { context, reply, privdata in
            RedisInvalidationListener.listener(context, privdata)?.setUpReply(reply?.assumingMemoryBound(to: redisReply.self))
        }, privdata: unretainedSelf)
        guard sent else {
            phase = .refused
            link.dropSoon(reason: "hiredis refused a command")
            return
        }
        steps.append(step)
    }

    /// Answers to AUTH/SELECT, CLIENT ID and CLIENT TRACKING, in the order they were sent.
    private func setUpReply(_ reply: UnsafeMutablePointer<redisReply>?) {
        loop.assertInLoop()
        // nil: hiredis is freeing the context after Redis closed it; `linkDown` follows.
        guard let reply, phase == .settingUp, !steps.isEmpty else { return }
        let step = steps.removeFirst()
        switch (step, RedisReply(parsing: reply)) {
        case (_, .error(let message)):
            refuse(step, message)
        case (.credentials, _):
            break
        case (.clientID, .integer(let id)):
            var arguments = ["CLIENT", "TRACKING", "on", "REDIRECT", String(id), "BCAST"].map { Array($0.utf8) }
            for prefix in prefixes { arguments += [Array("PREFIX".utf8), Array(prefix.utf8)] }
            sendStep(.tracking, arguments)
        case (.tracking, .status("OK")):
            // Only now, with no set-up reply outstanding: from this command on hiredis treats
            // the context as subscribed (see `subscribe()`).
            phase = .subscribing
            if !subscribe() {
                phase = .refused
                link.dropSoon(reason: "hiredis refused SUBSCRIBE")
            }
        case (_, let other):
            refuse(step, "unexpected reply \(other)")
        }
    }

    /// A refused set-up step (wrong password, no such database, a Redis without CLIENT
    /// TRACKING): dropped once and retried with backoff, so fixing Redis recovers.
    private func refuse(_ step: Step, _ message: String) {
        phase = .refused
        steps.removeAll()
        logger.error("Redis refused the invalidation subscription set-up", metadata: [
            "step": "\(step)", "error": "\(RedisErrorSummary.truncated(message))",
        ])
        // Not from inside hiredis' reply callback: drop on the next tick.
        link.dropSoon(reason: "invalidation subscription set-up rejected")
    }

    // MARK: the subscription

    /// Every reply on the subscription: confirmations (of the SUBSCRIBE and of each probe),
    /// invalidation messages, and whatever else hiredis routes here. nil: hiredis is freeing the
    /// context after Redis closed it (the disconnect follows).
    private func subscriptionReply(_ reply: UnsafeMutablePointer<redisReply>?) {
        loop.assertInLoop()
        guard let reply else {
            enterDown()
            setTracking(false)
            return
        }
        lastHeard = loop.monotonicMilliseconds
        let event = SubscriptionEvent(reply, channel: Self.channel, limits: limits)
        switch event {
        case .confirmed:
            unconfirmedSubscribes = max(0, unconfirmedSubscribes - 1)
            if phase == .subscribing {
                phase = .subscribed
                link.setUpFinished()
                probeSentAt = nil
                armHealthCheck(milliseconds: configuration.healthCheckIntervalMilliseconds)
                logger.info("tracking Redis invalidations", metadata: ["redis": "\(configuration.host):\(configuration.port)"])
                setTracking(true)
            } else if unconfirmedSubscribes == 0, probeSentAt != nil {
                // The probe was answered: the next one an interval from now.
                probeSentAt = nil
                armHealthCheck(milliseconds: configuration.healthCheckIntervalMilliseconds)
            }
        case .invalidation(let invalidation):
            if case .keys(let keys) = invalidation, keys.isEmpty { return }
            onInvalidation?(invalidation)
        case .pong:
            break
        case .unexpected(let what):
            logger.warning("unexpected reply on the Redis invalidation subscription", metadata: ["reply": "\(what)"])
        }
    }

    // MARK: liveness

    private func armHealthCheck(milliseconds: Int) {
        do {
            try healthTimer.arm(milliseconds: milliseconds) { [unowned self] in healthCheck() }
        } catch {
            // Out of memory: without a probe a hung Redis would go unnoticed, so start over.
            logger.error("could not arm the Redis health check timer", metadata: ["error": "\(error)"])
            link.dropSoon(reason: "no health check timer")
        }
    }

    /// Probes an interval after the last probe was answered (or the subscription confirmed);
    /// a probe unanswered for the command timeout, with nothing else heard meanwhile, drops
    /// the connection. Probing whatever the traffic keeps this simple, and costs Redis one
    /// SUBSCRIBE per interval.
    private func healthCheck() {
        guard phase == .subscribed, !closed else { return }
        let now = loop.monotonicMilliseconds
        let timeout = configuration.commandTimeoutMilliseconds
        guard let sent = probeSentAt else {
            guard subscribe() else {
                link.drop(reason: "could not send the health probe")
                return
            }
            probeSentAt = now
            armHealthCheck(milliseconds: timeout)
            return
        }
        // Messages queued ahead of the confirmation show Redis is alive as well as it does.
        let deadline = max(sent, lastHeard) + Int64(timeout)
        guard now < deadline else {
            link.drop(reason: "no answer within \(timeout) ms")
            return
        }
        armHealthCheck(milliseconds: Int(deadline - now))
    }

    /// Sends SUBSCRIBE: the first, and each health probe. For a probe the channel is
    /// subscribed already: Redis confirms it again (["subscribe", channel, 1]) and hiredis hands
    /// that to the subscription callback, in order with the messages.
    ///
    /// The probe is not PING: in hiredis 0.14.1 every command sent after a SUBSCRIBE goes on the
    /// `sub.invalid` list, which only a non-array reply shifts; Redis answers PING with the
    /// array ["pong", ""], which hiredis looks up as a *pattern* named "" (it starts with 'p'),
    /// finds nothing, and so drops, or, when a message came before it in the same read, hands
    /// to the subscription callback (the stale callback copy in `redisProcessCallbacks`). The
    /// PING's own callback only runs, with NULL, when the context is freed, and each PING
    /// leaves one allocation on that list until then. Re-subscribing leaves nothing behind:
    /// hiredis replaces the channel's callback (same function, same `privdata`) and counts the
    /// confirmation off.
    private func subscribe() -> Bool {
        let sent = link.send([Array("SUBSCRIBE".utf8), Self.channel], callback: { context, reply, privdata in
            RedisInvalidationListener.listener(context, privdata)?.subscriptionReply(reply?.assumingMemoryBound(to: redisReply.self))
        }, privdata: unretainedSelf)
        if sent { unconfirmedSubscribes += 1 }
        return sent
    }
}

extension RedisInvalidationListener: RedisLinkDelegate {
    func linkOpened() {
        enterDown()
        phase = .settingUp
        // Pipelined; Redis answers in order. TRACKING needs the id, so it follows CLIENT ID's answer.
        for command in configuration.setUpCommands { sendStep(.credentials, command) }
        sendStep(.clientID, [Array("CLIENT".utf8), Array("ID".utf8)])
    }

    func linkConnected() {}

    func linkDown(_ loss: RedisLinkLoss) {
        enterDown()
        setTracking(false)
    }
}

/// What one reply on the invalidation subscription means, read straight from hiredis' reply
/// (a message's keys are copied once, and only within the limits).
enum SubscriptionEvent: Equatable {
    /// ["subscribe", channel, count]: the SUBSCRIBE, or a probe, was confirmed.
    case confirmed
    case invalidation(RedisInvalidation)
    /// ["pong", …]: an answer to a PING (we send none, but hiredis may route one here).
    case pong
    case unexpected(String)

    /// Longest message kind or channel name read (ours are 9 and 20 bytes).
    private static let maxNameBytes = 256

    init(_ reply: UnsafeMutablePointer<redisReply>, channel: [UInt8], limits: RedisInvalidationLimits) {
        let value = reply.pointee
        guard value.type == REDIS_REPLY_ARRAY, value.elements >= 2, let parts = value.element,
              let kindBytes = Self.string(parts[0], maxBytes: Self.maxNameBytes) else {
            self = .unexpected(Self.shape(of: value))
            return
        }
        let kind = String(decoding: kindBytes, as: UTF8.self).lowercased()
        if kind == "pong" {
            self = .pong
            return
        }
        guard Self.string(parts[1], maxBytes: Self.maxNameBytes) == channel else {
            self = .unexpected("\(kind) on another channel")
            return
        }
        switch (kind, value.elements) {
        case ("subscribe", 3):
            self = .confirmed
        case ("message", 3):
            self = .invalidation(Self.invalidation(parts[2], limits: limits))
        default:
            self = .unexpected("\(kind) with \(value.elements) parts")
        }
    }

    /// A message's payload: nil means everything (FLUSHALL, FLUSHDB); an array holds the keys;
    /// Redis 6.0 sends a single key as a plain string. Anything else, or anything over the
    /// limits, is read as everything: forgetting too much is always safe.
    private static func invalidation(_ payload: UnsafeMutablePointer<redisReply>?, limits: RedisInvalidationLimits) -> RedisInvalidation {
        guard let payload else { return .all }
        let value = payload.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return string(payload, maxBytes: limits.maxKeyBytes).map { .keys([$0]) } ?? .all
        case REDIS_REPLY_ARRAY:
            guard value.elements <= limits.maxKeysPerMessage, let items = value.element else { return .all }
            var keys: [[UInt8]] = []
            keys.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                guard let key = string(items[index], maxBytes: limits.maxKeyBytes) else { return .all }
                keys.append(key)
            }
            return .keys(keys)
        default:
            return .all
        }
    }

    /// The bytes of a bulk string no longer than `maxBytes`; nil for anything else.
    private static func string(_ reply: UnsafeMutablePointer<redisReply>?, maxBytes: Int) -> [UInt8]? {
        guard let value = reply?.pointee, value.type == REDIS_REPLY_STRING, value.len <= maxBytes else { return nil }
        guard let str = value.str, value.len > 0 else { return [] }
        return str.withMemoryRebound(to: UInt8.self, capacity: value.len) { Array(UnsafeBufferPointer(start: $0, count: value.len)) }
    }

    /// A reply's shape for a log line, without its contents.
    private static func shape(of value: redisReply) -> String {
        switch value.type {
        case REDIS_REPLY_ARRAY: return "array of \(value.elements)"
        case REDIS_REPLY_STRING: return "bulk string"
        case REDIS_REPLY_STATUS: return "status"
        case REDIS_REPLY_ERROR: return "error"
        case REDIS_REPLY_INTEGER: return "integer"
        default: return "null"
        }
    }
}

extension SubscriptionEvent {
    /// Reads one RESP2 reply given as it comes off the wire, through hiredis' own reader, as
    /// the subscription does (for tests of the decoding). nil when `wire` is not one whole reply.
    init?(wire: [UInt8], channel: [UInt8] = RedisInvalidationListener.channel, limits: RedisInvalidationLimits = RedisInvalidationLimits()) {
        guard let reader = redisReaderCreate() else { return nil }
        defer { redisReaderFree(reader) }
        let fed = wire.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        }
        var object: UnsafeMutableRawPointer?
        guard fed == REDIS_OK, redisReaderGetReply(reader, &object) == REDIS_OK, let object else { return nil }
        defer { freeReplyObject(object) }
        self.init(object.assumingMemoryBound(to: redisReply.self), channel: channel, limits: limits)
    }
}
