public enum PercentEncoding {
    /// Encodes one URL path segment: RFC 3986 unreserved characters stay, every other UTF-8 byte
    /// becomes `%XX` (uppercase), so `/`, spaces and `%` cannot change the path's meaning.
    public static func pathSegment(_ segment: String) -> String {
        encode(segment) { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                return true
            default:
                return false
            }
        }
    }

    /// Every UTF-8 byte of `text` that `keeps` refuses becomes `%XX` (uppercase).
    public static func encode(_ text: String, keeping keeps: (UInt8) -> Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if keeps(byte) {
                out.append(byte)
            } else {
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
        decode(component, plusIsSpace: true)
    }

    /// Decodes one URL path segment: `%XX` escapes only, since `+` is an ordinary character in a
    /// path (RFC 3986). Nil when an escape is truncated or not hexadecimal.
    public static func decodePathSegment(_ segment: some Collection<UInt8>) -> [UInt8]? {
        decode(segment, plusIsSpace: false)
    }

    /// Decodes one `application/x-www-form-urlencoded` component from contiguous bytes (the
    /// query parser's case; the generic form above lands here too).
    public static func decodeQueryComponent(_ component: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        decode(component, plusIsSpace: true)
    }

    private static func decode(_ text: some Collection<UInt8>, plusIsSpace: Bool) -> [UInt8]? {
        // One pass over contiguous bytes; a generic iteration from another module is unspecialized
        // (a witness call per byte: ~45,000 instructions for one Connect GET query, callgrind).
        if let decoded = text.withContiguousStorageIfAvailable({ decode($0, plusIsSpace: plusIsSpace) }) { return decoded }
        return Array(text).withUnsafeBufferPointer { decode($0, plusIsSpace: plusIsSpace) }
    }

    private static func decode(_ text: UnsafeBufferPointer<UInt8>, plusIsSpace: Bool) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var index = 0
        while index < text.count {
            let byte = text[index]
            index += 1
            switch byte {
            case UInt8(ascii: "%"):
                guard index + 2 <= text.count,
                      let high = hexDigitValue(text[index]), let low = hexDigitValue(text[index + 1]) else { return nil }
                out.append(high << 4 | low)
                index += 2
            case UInt8(ascii: "+") where plusIsSpace:
                out.append(UInt8(ascii: " "))
            default:
                out.append(byte)
            }
        }
        return out
    }
}
