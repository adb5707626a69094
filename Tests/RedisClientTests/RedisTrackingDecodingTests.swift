import EventLoop
import Logging
import Testing
@testable import RedisClient

/// What a reply on the invalidation subscription means, read through hiredis' own reader from
/// RESP2 as Redis writes it, with the memory limits.
@Suite struct RedisTrackingDecodingTests {
    /// RESP2 for an array of bulk strings; nil elements are null bulks.
    static func resp(_ parts: [[UInt8]?]) -> [UInt8] {
        var out = Array("*\(parts.count)\r\n".utf8)
        for part in parts {
            guard let part else {
                out += Array("$-1\r\n".utf8)
                continue
            }
            out += Array("$\(part.count)\r\n".utf8) + part + Array("\r\n".utf8)
        }
        return out
    }

    static func message(keys: [String]) -> [UInt8] {
        let head = resp([Array("message".utf8), RedisInvalidationListener.channel])
        // Replace the count of 2 with 3 and append the keys as a nested array.
        return Array("*3".utf8) + head.dropFirst(2) + resp(keys.map { Array($0.utf8) })
    }

    @Test func keysOfAMessage() {
        let event = SubscriptionEvent(wire: Self.message(keys: ["pe:{m1}:answers", "pe:{m2}:answers"]))
        #expect(event == .invalidation(.keys([Array("pe:{m1}:answers".utf8), Array("pe:{m2}:answers".utf8)])))
    }

    @Test func keysAreBinarySafe() {
        let key: [UInt8] = [0x70, 0x65, 0x3a, 0x00, 0x0d, 0x0a, 0xff]
        let wire = Array("*3\r\n".utf8) + Self.resp([Array("message".utf8), RedisInvalidationListener.channel]).dropFirst(4)
            + Self.resp([key])
        #expect(SubscriptionEvent(wire: wire) == .invalidation(.keys([key])))
    }

    /// FLUSHALL and FLUSHDB send a null payload: everything goes.
    @Test func aNullPayloadIsEverything() {
        let nullBulk = Self.resp([Array("message".utf8), RedisInvalidationListener.channel, nil])
        #expect(SubscriptionEvent(wire: nullBulk) == .invalidation(.all))
        let nullArray = Array("*3\r\n".utf8) + Self.resp([Array("message".utf8), RedisInvalidationListener.channel]).dropFirst(4)
            + Array("*-1\r\n".utf8)
        #expect(SubscriptionEvent(wire: nullArray) == .invalidation(.all))
    }

    /// Redis 6.0 sends a single key as a plain bulk string.
    @Test func aSingleKeyAsAString() {
        let wire = Self.resp([Array("message".utf8), RedisInvalidationListener.channel, Array("pe:{m1}:answers".utf8)])
        #expect(SubscriptionEvent(wire: wire) == .invalidation(.keys([Array("pe:{m1}:answers".utf8)])))
    }

    /// A payload we cannot read key by key is read as "everything": never wrong for a cache.
    @Test func anUnreadablePayloadIsEverything() {
        let head = Array("*3\r\n".utf8) + Self.resp([Array("message".utf8), RedisInvalidationListener.channel]).dropFirst(4)
        #expect(SubscriptionEvent(wire: head + Array(":7\r\n".utf8)) == .invalidation(.all))
        #expect(SubscriptionEvent(wire: head + Array("*2\r\n$1\r\na\r\n:1\r\n".utf8)) == .invalidation(.all))
    }

    @Test func limitsOnKeysAndKeyLength() {
        let limits = RedisInvalidationLimits(maxKeysPerMessage: 2, maxKeyBytes: 8)
        #expect(SubscriptionEvent(wire: Self.message(keys: ["a", "b"]), limits: limits) == .invalidation(.keys([[0x61], [0x62]])))
        #expect(SubscriptionEvent(wire: Self.message(keys: ["a", "b", "c"]), limits: limits) == .invalidation(.all))
        #expect(SubscriptionEvent(wire: Self.message(keys: ["12345678"]), limits: limits) == .invalidation(.keys([Array("12345678".utf8)])))
        #expect(SubscriptionEvent(wire: Self.message(keys: ["123456789"]), limits: limits) == .invalidation(.all))
        let single = Self.resp([Array("message".utf8), RedisInvalidationListener.channel, Array("123456789".utf8)])
        #expect(SubscriptionEvent(wire: single, limits: limits) == .invalidation(.all))
        // The limits are on keys: the kind and the channel name are not counted against them.
        let tiny = RedisInvalidationLimits(maxKeysPerMessage: 1, maxKeyBytes: 1)
        #expect(SubscriptionEvent(wire: Self.message(keys: ["k"]), limits: tiny) == .invalidation(.keys([[0x6b]])))
    }

    @Test func defaultLimits() {
        #expect(RedisInvalidationLimits() == RedisInvalidationLimits(maxKeysPerMessage: 100_000, maxKeyBytes: 65_536))
    }

    @Test func subscribeConfirmations() {
        let wire = Array("*3\r\n".utf8) + Self.resp([Array("subscribe".utf8), RedisInvalidationListener.channel]).dropFirst(4)
            + Array(":1\r\n".utf8)
        #expect(SubscriptionEvent(wire: wire) == .confirmed)
    }

    /// What Redis answers a PING with on a subscribed RESP2 connection; hiredis 0.14.1 may hand
    /// it to the subscription callback. It is neither a confirmation nor an invalidation.
    @Test func aPongIsOnlyAPong() {
        #expect(SubscriptionEvent(wire: Self.resp([Array("pong".utf8), []])) == .pong)
        #expect(SubscriptionEvent(wire: Self.resp([Array("pong".utf8), Array("x".utf8)])) == .pong)
    }

    @Test func anythingElseIsUnexpected() {
        #expect(SubscriptionEvent(wire: Array("+OK\r\n".utf8)) == .unexpected("status"))
        #expect(SubscriptionEvent(wire: Array("-ERR no\r\n".utf8)) == .unexpected("error"))
        let other = Self.resp([Array("message".utf8), Array("news".utf8), Array("k".utf8)])
        #expect(SubscriptionEvent(wire: other) == .unexpected("message on another channel"))
        let unsubscribe = Array("*3\r\n".utf8) + Self.resp([Array("unsubscribe".utf8), RedisInvalidationListener.channel]).dropFirst(4)
            + Array(":0\r\n".utf8)
        #expect(SubscriptionEvent(wire: unsubscribe) == .unexpected("unsubscribe with 3 parts"))
        #expect(SubscriptionEvent(wire: Array("*1\r\n$7\r\nmessage\r\n".utf8)) == .unexpected("array of 1"))
    }

    @Test func setUpCommandsComeFromTheURL() throws {
        #expect(try RedisConfiguration(url: "redis://127.0.0.1:6379").setUpCommands.isEmpty)
        let both = try RedisConfiguration(url: "redis://:secret@127.0.0.1:6379/2").setUpCommands
        #expect(both == [[Array("AUTH".utf8), Array("secret".utf8)], [Array("SELECT".utf8), Array("2".utf8)]])
    }

    /// Redis refuses overlapping prefixes; so does the listener, at construction.
    @Test func overlappingPrefixesAreRefused() throws {
        let loop = try Loop()
        let configuration = try RedisConfiguration(url: "redis://127.0.0.1:6379")
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        for prefixes in [["pe:", "pe:{"], ["pe:{", "pe:"], ["a", "a"], ["", "x"]] {
            #expect(throws: RedisTrackingConfigurationError.self) {
                _ = try RedisInvalidationListener(loop: loop, configuration: configuration, prefixes: prefixes, logger: logger)
            }
        }
        #expect(throws: RedisTrackingConfigurationError.self) {
            _ = try RedisInvalidationListener(loop: loop, configuration: configuration, prefixes: [],
                                              limits: RedisInvalidationLimits(maxKeysPerMessage: 0), logger: logger)
        }
        let listener = try RedisInvalidationListener(loop: loop, configuration: configuration, prefixes: ["pe:{", "other:"], logger: logger)
        #expect(!listener.isTracking)
        listener.close()
        listener.close()
        #expect(!listener.isTracking)
    }
}
