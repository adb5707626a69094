/// URL-safe base64 (RFC 4648 §5) with optional padding; the standard alphabet is accepted too.
/// A space stands for `+`: an unescaped standard-alphabet `+` in a query decodes to a space.
public func decodeBase64(_ text: [UInt8]) -> [UInt8]? {
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

