/// The decoded parameters of a Connect unary GET.
public struct ConnectGetQuery: Equatable, Sendable {
    /// The request message, percent- and base64-decoded but still compressed if `compression` says so.
    public var message: [UInt8]
    public var compression: String?

    public init(message: [UInt8], compression: String?) {
        self.message = message
        self.compression = compression
    }
}

/// Pure pieces of the Connect unary protocol.
public enum ConnectUnary {
    /// `application/json`, optionally with `charset=utf-8`; case-insensitive, spaces allowed
    /// around the parameter.
    public static func isJSONContentType(_ value: String) -> Bool {
        // What nearly every caller sends: skip the general parse.
        if value == "application/json" { return true }
        let parts = value.lowercased().split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)
        guard trimmingOWS(parts[0]) == "application/json" else { return false }
        guard parts.count == 2 else { return true }
        let parameter = parts[1].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parameter.count == 2, trimmingOWS(parameter[0]) == "charset" else { return false }
        let charset = trimmingOWS(parameter[1])
        return charset == "utf-8" || charset == "\"utf-8\""
    }

    /// Whether an `accept-encoding` value admits gzip ("gzip;q=0" is an explicit refusal).
    public static func acceptsGzip(_ acceptEncoding: String) -> Bool {
        acceptEncoding.split(separator: ",").contains { part in
            let fields = part.split(separator: ";").map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
            guard fields.first == "gzip" else { return false }
            return !fields.dropFirst().contains { $0 == "q=0" || $0 == "q=0.0" || $0 == "q=0.00" || $0 == "q=0.000" }
        }
    }

    /// `connect-timeout-ms`: 1–10 ASCII digits, else nil (the header is then invalid).
    public static func parseTimeoutMilliseconds(_ value: String) -> Int? {
        let utf8 = value.utf8
        guard (1...10).contains(utf8.count), utf8.allSatisfy(isDigit) else { return nil }
        return Int(value)
    }

    /// Decodes a Connect GET query string (without the `?`). Parameters may come in any order and
    /// unknown ones are ignored; like connect-go, the first occurrence of a name counts and `+`
    /// decodes to a space.
    public static func parseGetQuery(_ query: String) throws(ExpiryError) -> ConnectGetQuery {
        var encoding: [UInt8]?
        var message: [UInt8]?
        var base64: [UInt8]?
        var compression: [UInt8]?
        for pair in query.utf8.split(separator: UInt8(ascii: "&")) {
            let nameEnd = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            guard let name = PercentEncoding.decodeQueryComponent(pair[pair.startIndex..<nameEnd]) else {
                throw .invalidRequest("malformed percent-encoding in the query string")
            }
            let rawValue = nameEnd == pair.endIndex ? pair[nameEnd...] : pair[pair.index(after: nameEnd)...]
            func value() throws(ExpiryError) -> [UInt8] {
                guard let decoded = PercentEncoding.decodeQueryComponent(rawValue) else {
                    throw .invalidRequest("malformed percent-encoding in query parameter \"\(String(decoding: name, as: UTF8.self))\"")
                }
                return decoded
            }
            switch String(decoding: name, as: UTF8.self) {
            case "encoding" where encoding == nil: encoding = try value()
            case "message" where message == nil: message = try value()
            case "base64" where base64 == nil: base64 = try value()
            case "compression" where compression == nil: compression = try value()
            default: continue
            }
        }
        guard let encoding else { throw .invalidRequest("missing query parameter \"encoding\" (expected encoding=json)") }
        guard encoding.elementsEqual("json".utf8) else {
            throw .invalidRequest("unsupported encoding \"\(String(decoding: encoding, as: UTF8.self))\"; only encoding=json is served")
        }
        guard var payload = message else { throw .invalidRequest("missing query parameter \"message\"") }
        if let base64, base64.elementsEqual("1".utf8) {
            guard let decoded = decodeBase64(payload) else {
                throw .invalidRequest("query parameter \"message\" is not valid base64")
            }
            payload = decoded
        }
        let compressionName = compression.map { String(decoding: $0, as: UTF8.self) }
        return ConnectGetQuery(message: payload, compression: compressionName?.isEmpty == false ? compressionName : nil)
    }
}

/// Drops HTTP optional whitespace (spaces, tabs) from both ends.
func trimmingOWS(_ text: Substring) -> Substring {
    let isOWS: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    guard let first = text.firstIndex(where: { !isOWS($0) }), let last = text.lastIndex(where: { !isOWS($0) }) else {
        return text[text.endIndex...]
    }
    return text[first...last]
}

/// URL-safe base64 (RFC 4648 §5) with optional padding; the standard alphabet is accepted too.
/// A space stands for `+`: an unescaped standard-alphabet `+` in a query decodes to a space.
func decodeBase64(_ text: [UInt8]) -> [UInt8]? {
    var body = text[...]
    while body.last == UInt8(ascii: "=") { body.removeLast() }
    guard text.count - body.count <= 2, body.count % 4 != 1 else { return nil }
    if text.count != body.count, text.count % 4 != 0 { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(body.count * 3 / 4)
    var accumulator: UInt32 = 0
    var bits = 0
    for byte in body {
        let sextet: UInt8
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): sextet = byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): sextet = byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): sextet = byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: " "): sextet = 62
        case UInt8(ascii: "_"), UInt8(ascii: "/"): sextet = 63
        default: return nil
        }
        accumulator = accumulator << 6 | UInt32(sextet)
        bits += 6
        if bits >= 8 {
            bits -= 8
            out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
        }
    }
    return out
}

public enum PercentEncoding {
    /// Encodes one URL path segment: RFC 3986 unreserved characters stay, every other UTF-8 byte
    /// becomes `%XX` (uppercase), so `/`, spaces and `%` cannot change the path's meaning.
    public static func pathSegment(_ segment: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(segment.utf8.count)
        for byte in segment.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigits[Int(byte >> 4)])
                out.append(upperHexDigits[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes one `application/x-www-form-urlencoded` component: `%XX` escapes and `+` as space.
    /// Nil when an escape is truncated or not hexadecimal.
    public static func decodeQueryComponent(_ component: some Collection<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(component.count)
        var iterator = component.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexDigitValue),
                      let low = iterator.next().flatMap(hexDigitValue) else { return nil }
                out.append(high << 4 | low)
            case UInt8(ascii: "+"):
                out.append(UInt8(ascii: " "))
            default:
                out.append(byte)
            }
        }
        return out
    }
}

let upperHexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)
