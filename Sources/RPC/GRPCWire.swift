import Codecs

/// Pure pieces of the gRPC and gRPC-Web wire formats (github.com/grpc/grpc/blob/master/doc/
/// PROTOCOL-HTTP2.md and PROTOCOL-WEB.md): length-prefixed messages, `grpc-timeout`, status text.
public enum GRPCWire {
    /// Flag byte + 4-byte big-endian length.
    public static let prefixSize = 5
    /// gRPC-Web marks its trailer frame with this flag bit.
    public static let trailerFlag: UInt8 = 0x80

    /// The one message of a unary request body. Anything else (no message, a cut-off frame, a
    /// second message, a trailer frame, a length over `limit`) is refused with a status, never
    /// waited on: the body is complete when it arrives here.
    public static func unaryMessage(_ body: [UInt8], limit: Int) throws(RPCError) -> (compressed: Bool, payload: [UInt8]) {
        guard body.count >= prefixSize else {
            throw RPCError(.internal, body.isEmpty ? "the request has no message" : "the request's message prefix is cut off")
        }
        let flag = body[0]
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        guard flag & ~1 == 0 else { throw RPCError(.internal, "unknown message flags 0x\(String(flag, radix: 16))") }
        guard length <= limit else { throw RPCError(.resourceExhausted, "the request message is \(length) bytes; the limit is \(limit)") }
        let available = body.count - prefixSize
        guard length <= available else { throw RPCError(.internal, "the request message is cut off: \(available) of \(length) bytes") }
        guard length == available else { throw RPCError(.internal, "a unary call carries one message; more bytes follow it") }
        return (flag == 1, Array(body[prefixSize...]))
    }

    /// One length-prefixed message.
    public static func frame(_ payload: [UInt8], flag: UInt8) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(prefixSize + payload.count)
        appendFrame(payload, flag: flag, to: &out)
        return out
    }

    static func appendFrame(_ payload: [UInt8], flag: UInt8, to out: inout [UInt8]) {
        let length = UInt32(clamping: payload.count)
        out.append(flag)
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
        out.append(contentsOf: payload)
    }

    /// gRPC-Web's last frame: the trailers as HTTP/1-style lines.
    public static func webTrailerFrame(_ trailers: [(name: String, value: String)]) -> [UInt8] {
        var text: [UInt8] = []
        for (name, value) in trailers {
            text.append(contentsOf: name.utf8)
            text.append(contentsOf: ": ".utf8)
            text.append(contentsOf: value.utf8)
            text.append(contentsOf: "\r\n".utf8)
        }
        return frame(text, flag: trailerFlag)
    }

    /// The longest deadline kept: larger `grpc-timeout` values (up to 99,999,999 hours) saturate.
    public static let maxTimeoutMilliseconds = Int(Int32.max)

    /// `grpc-timeout`: 1–8 ASCII digits and a unit (H, M, S, m, u, n), in milliseconds, rounded
    /// up so a tiny timeout is not a zero one; nil when malformed.
    public static func parseTimeoutMilliseconds(_ value: String) -> Int? {
        let utf8 = Array(value.utf8)
        guard (2...9).contains(utf8.count), let unit = utf8.last else { return nil }
        let digits = utf8.dropLast()
        guard digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        let amount = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        let milliseconds: Int
        switch unit {
        case UInt8(ascii: "H"): milliseconds = amount * 3_600_000
        case UInt8(ascii: "M"): milliseconds = amount * 60_000
        case UInt8(ascii: "S"): milliseconds = amount * 1000
        case UInt8(ascii: "m"): milliseconds = amount
        case UInt8(ascii: "u"): milliseconds = (amount + 999) / 1000
        case UInt8(ascii: "n"): milliseconds = (amount + 999_999) / 1_000_000
        default: return nil
        }
        return min(milliseconds, maxTimeoutMilliseconds)
    }

    /// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself.
    public static func percentEncodedMessage(_ message: String) -> String {
        PercentEncoding.encode(message) { byte in byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") }
    }
}
