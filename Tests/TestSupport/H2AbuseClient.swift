import Foundation

/// A raw HTTP/2 peer (h2c, prior knowledge) for tests that must send what no well-behaved client
/// sends: bare frames, half-finished requests, floods, closed windows. Blocking socket on
/// 127.0.0.1; every read waits with a deadline. It asks for no HPACK dynamic table
/// (SETTINGS_HEADER_TABLE_SIZE 0), so every `:status` it reads is static or literal.
public final class H2AbuseClient {
    public struct Frame: Sendable {
        public let type: UInt8
        public let flags: UInt8
        public let stream: UInt32
        public let payload: [UInt8]

        public var endStream: Bool { flags & 0x1 != 0 }
        /// RST_STREAM or GOAWAY error code.
        public var errorCode: UInt32? {
            switch type {
            case Self.rstStream where payload.count >= 4: return Self.uint32(payload, at: 0)
            case Self.goAway where payload.count >= 8: return Self.uint32(payload, at: 4)
            default: return nil
            }
        }
        /// GOAWAY's last stream id.
        public var lastStreamID: UInt32? { type == Self.goAway && payload.count >= 4 ? Self.uint32(payload, at: 0) & 0x7fff_ffff : nil }
        /// A response HEADERS frame's `:status`.
        public var status: Int? { type == Self.headers ? H2AbuseClient.status(ofHeaderBlock: payload) : nil }

        public static let data: UInt8 = 0, headers: UInt8 = 1, rstStream: UInt8 = 3, settings: UInt8 = 4, ping: UInt8 = 6,
                          goAway: UInt8 = 7, windowUpdate: UInt8 = 8, continuation: UInt8 = 9

        static func uint32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
            bytes[offset..<(offset + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        }
    }

    public static let refusedStream: UInt32 = 7

    private let fd: Int32
    private var received: [UInt8] = []
    // What the server's flow control lets `upload` send (RFC 9113 §6.9).
    private var connectionWindow = 65_535
    private var initialStreamWindow = 65_535
    private var streamWindows: [UInt32: Int] = [:]
    /// Streams the server answered (HEADERS) or reset.
    public private(set) var answeredStreams: Set<UInt32> = []
    /// The server closed (EOF or reset): nothing more will be read.
    public private(set) var peerClosed = false

    /// Connects and sends the preface and SETTINGS (plus `settings`: id and value pairs, e.g.
    /// `(4, 0)` for a zero initial window).
    public init(port: Int, settings: [(id: UInt16, value: UInt32)] = []) throws {
        fd = try connectedLoopbackSocket(port: port)
        var payload: [UInt8] = []
        for (id, value) in [(UInt16(1), UInt32(0))] + settings {
            payload += [UInt8(id >> 8), UInt8(id & 0xff)] + Self.bytes(of: value)
        }
        guard send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(Frame.settings, stream: 0, payload)) else {
            Glibc.close(fd)
            throw H2AbuseError("cannot send the preface")
        }
    }

    deinit { Glibc.close(fd) }

    // MARK: sending

    /// Writes all of `bytes`; false once the server has closed.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    public static func frame(_ type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags] + bytes(of: stream & 0x7fff_ffff) + payload
    }

    /// A header block of literal fields, neither indexed nor Huffman-coded.
    public static func headerBlock(_ fields: [(String, String)]) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in fields {
            block.append(0x00)
            block += integer(name.utf8.count, prefixBits: 7) + Array(name.utf8)
            block += integer(value.utf8.count, prefixBits: 7) + Array(value.utf8)
        }
        return block
    }

    /// HPACK's prefixed integer (RFC 7541 §5.1), the flag bits of the first byte left 0.
    public static func integer(_ value: Int, prefixBits: Int) -> [UInt8] {
        let limit = (1 << prefixBits) - 1
        guard value >= limit else { return [UInt8(value)] }
        var bytes = [UInt8(limit)]
        var rest = value - limit
        while rest >= 128 {
            bytes.append(UInt8(rest % 128 + 128))
            rest /= 128
        }
        return bytes + [UInt8(rest)]
    }

    /// The request's pseudo-headers, then `extra`.
    public static func requestBlock(method: String, path: String, extra: [(String, String)] = []) -> [UInt8] {
        headerBlock([(":method", method), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1")] + extra)
    }

    /// HEADERS (END_HEADERS, and END_STREAM unless a body follows) for a request.
    @discardableResult
    public func request(stream: UInt32, method: String = "GET", path: String, extra: [(String, String)] = [], endStream: Bool = true) -> Bool {
        send(Self.frame(Frame.headers, flags: endStream ? 0x5 : 0x4, stream: stream, Self.requestBlock(method: method, path: path, extra: extra)))
    }

    /// DATA frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE).
    @discardableResult
    public func data(stream: UInt32, _ bytes: [UInt8], endStream: Bool = false) -> Bool {
        var frames: [UInt8] = []
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + 16_384)
            frames += Self.frame(Frame.data, flags: endStream && end == bytes.count ? 0x1 : 0, stream: stream, Array(bytes[offset..<end]))
            offset = end
        } while offset < bytes.count
        return send(frames)
    }

    /// Sends up to `count` body bytes on `stream` (no END_STREAM) as fast as the server's windows
    /// allow, until they are sent, the server answers or resets the stream, or `timeout` seconds
    /// pass. Returns the bytes sent.
    @discardableResult
    public func upload(stream: UInt32, count: Int, timeout: Double = 30) -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        var sent = 0
        while sent < count, !peerClosed, !answeredStreams.contains(stream), Date() < deadline {
            let window = min(connectionWindow, streamWindows[stream] ?? initialStreamWindow)
            let size = min(window, count - sent, 16_384)
            guard size > 0 else {
                _ = next(timeout: max(0, deadline.timeIntervalSinceNow)) { $0.type == Frame.windowUpdate || $0.stream == stream }
                continue
            }
            guard send(Self.frame(Frame.data, stream: stream, [UInt8](repeating: 0x7b, count: size))) else { break }
            connectionWindow -= size
            streamWindows[stream, default: initialStreamWindow] -= size
            sent += size
        }
        return sent
    }

    @discardableResult
    public func ping() -> Bool { send(Self.frame(Frame.ping, stream: 0, [UInt8](repeating: 0, count: 8))) }

    // MARK: reading

    /// Reads frames until one satisfies `match` (returned) or `timeout` seconds pass or the server
    /// closes (nil). Every frame read is also passed to `seen`. SETTINGS and PINGs are
    /// acknowledged unless `acknowledge` is false.
    public func next(timeout: Double = 30, acknowledge: Bool = true, seen: (Frame) -> Void = { _ in },
                     where match: (Frame) -> Bool) -> Frame? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            while let frame = takeFrame() {
                if acknowledge, frame.flags & 0x1 == 0, frame.type == Frame.settings || frame.type == Frame.ping {
                    send(Self.frame(frame.type, flags: 0x1, stream: 0, frame.type == Frame.ping ? frame.payload : []))
                }
                seen(frame)
                if match(frame) { return frame }
            }
            let remaining = deadline.timeIntervalSinceNow
            guard !peerClosed, remaining > 0, fill(waitingUpTo: remaining) else { return nil }
        }
    }

    /// Waits until the server closes the connection (true) or `timeout` seconds pass, reading and
    /// discarding frames meanwhile; `tick` runs about every `tickSeconds` (e.g. to send a PING).
    public func waitForClose(timeout: Double, tickSeconds: Double = 0.2, tick: () -> Void = {}) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !peerClosed, Date() < deadline {
            _ = next(timeout: min(tickSeconds, max(0, deadline.timeIntervalSinceNow)), where: { _ in false })
            if !peerClosed { tick() }
        }
        return peerClosed
    }

    private func takeFrame() -> Frame? {
        guard received.count >= 9 else { return nil }
        let length = Int(received[0]) << 16 | Int(received[1]) << 8 | Int(received[2])
        guard received.count >= 9 + length else { return nil }
        let frame = Frame(type: received[3], flags: received[4], stream: Frame.uint32(received, at: 5) & 0x7fff_ffff,
                          payload: Array(received[9..<(9 + length)]))
        received.removeFirst(9 + length)
        note(frame)
        return frame
    }

    private func note(_ frame: Frame) {
        switch frame.type {
        case Frame.headers, Frame.rstStream:
            answeredStreams.insert(frame.stream)
        case Frame.windowUpdate where frame.payload.count == 4:
            let increment = Int(Frame.uint32(frame.payload, at: 0) & 0x7fff_ffff)
            if frame.stream == 0 { connectionWindow += increment } else { streamWindows[frame.stream, default: initialStreamWindow] += increment }
        case Frame.settings where frame.flags & 0x1 == 0:
            for offset in stride(from: 0, to: frame.payload.count - 5, by: 6)
            where frame.payload[offset] == 0 && frame.payload[offset + 1] == 4 {
                let value = Int(Frame.uint32(frame.payload, at: offset + 2))
                for stream in streamWindows.keys { streamWindows[stream]! += value - initialStreamWindow }
                initialStreamWindow = value
            }
        default:
            break
        }
    }

    /// False at EOF, on error, or when nothing came within the wait.
    private func fill(waitingUpTo seconds: Double) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, Int32(max(1, min(seconds * 1000, 60_000))))
        guard ready > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = recv(fd, &chunk, chunk.count, 0)
        guard count > 0 else {
            peerClosed = true
            return false
        }
        received += chunk[..<count]
        return true
    }

    // MARK: decoding

    /// `:status` from a response header block encoded without the dynamic table: a static index
    /// (200, 204, 206, 304, 400, 404, 500) or a literal with the `:status` name, raw or Huffman.
    public static func status(ofHeaderBlock block: [UInt8]) -> Int? {
        var index = 0
        while index < block.count, block[index] & 0xe0 == 0x20 { index += 1 }  // dynamic table size updates
        guard index < block.count else { return nil }
        let first = block[index]
        if first & 0x80 != 0 {
            let statics = [8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500]
            return statics[Int(first & 0x7f)]
        }
        let nameIndex = first & 0x40 != 0 ? first & 0x3f : first & 0x0f
        guard (8...14).contains(nameIndex), index + 1 < block.count else { return nil }
        let huffman = block[index + 1] & 0x80 != 0
        let length = Int(block[index + 1] & 0x7f)
        guard index + 2 + length <= block.count else { return nil }
        let value = Array(block[(index + 2)..<(index + 2 + length)])
        let digits = huffman ? huffmanDigits(value) : String(decoding: value, as: UTF8.self)
        return digits.flatMap { Int($0) }
    }

    /// Decodes a Huffman string of decimal digits (RFC 7541 Appendix B: 0-2 take 5 bits, 3-9 six).
    private static func huffmanDigits(_ bytes: [UInt8]) -> String? {
        let bits = bytes.flatMap { byte in (0..<8).reversed().map { (byte >> UInt8($0)) & 1 } }
        var result = ""
        var offset = 0
        while offset + 5 <= bits.count {
            let five = bits[offset..<(offset + 5)].reduce(0) { $0 << 1 | Int($1) }
            if five <= 2 {
                result.append(String(five))
                offset += 5
                continue
            }
            if five == 0b11111 { break }  // padding (all ones)
            guard offset + 6 <= bits.count else { break }
            let six = bits[offset..<(offset + 6)].reduce(0) { $0 << 1 | Int($1) }
            guard (0b011001...0b011111).contains(six) else { return nil }
            result.append(String(six - 0b011001 + 3))
            offset += 6
        }
        return result
    }

    private static func bytes(of value: UInt32) -> [UInt8] {
        [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }
}

public struct H2AbuseError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
