/// Reads the commonest shape of a small request without building a tree: one JSON object whose
/// members all have a key from a fixed list and a plain value — a string of printable ASCII
/// without escapes, or `null`. It answers nil for anything else (escapes, other characters,
/// other value types, unknown keys, any syntax error), and the caller then takes the full parser:
/// so it never decides what a malformed or unusual document means, and whatever it does accept,
/// the full parser reads the same way. Pure.
public enum FlatJSONObject {
    /// Calls `member` for each member in document order with the index of its key in `keys` and
    /// its value's byte range in `bytes` (nil for `null`); false, maybe after some calls, when
    /// the document is not of this shape.
    public static func scan(_ bytes: UnsafeRawBufferPointer, keys: [StaticString], member: (Int, Range<Int>?) -> Void) -> Bool {
        var index = 0
        let count = bytes.count
        @inline(__always) func skipWhitespace() {
            while index < count, isWhitespace(bytes[index]) { index += 1 }
        }
        /// A string without escapes from its opening quote: the range inside the quotes.
        @inline(__always) func plainString() -> Range<Int>? {
            guard index < count, bytes[index] == ASCII.quote else { return nil }
            index += 1
            let start = index
            while index < count {
                let byte = bytes[index]
                if byte == ASCII.quote {
                    index += 1
                    return start..<(index - 1)
                }
                // Escapes, control characters and non-ASCII text are the full parser's to judge.
                guard byte >= 0x20, byte < 0x80, byte != ASCII.backslash else { return nil }
                index += 1
            }
            return nil
        }
        skipWhitespace()
        guard index < count, bytes[index] == ASCII.openBrace else { return false }
        index += 1
        skipWhitespace()
        if index < count, bytes[index] == ASCII.closeBrace {
            index += 1
        } else {
            while true {
                skipWhitespace()
                guard let key = plainString(), let slot = keys.firstIndex(where: { equals(bytes, key, $0) }) else { return false }
                skipWhitespace()
                guard index < count, bytes[index] == ASCII.colon else { return false }
                index += 1
                skipWhitespace()
                if index + 4 <= count, bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
                   bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l") {
                    index += 4
                    member(slot, nil)
                } else {
                    guard let value = plainString() else { return false }
                    member(slot, value)
                }
                skipWhitespace()
                guard index < count else { return false }
                if bytes[index] == ASCII.comma {
                    index += 1
                    continue
                }
                guard bytes[index] == ASCII.closeBrace else { return false }
                index += 1
                break
            }
        }
        skipWhitespace()
        return index == count
    }

    @inline(__always)
    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    @inline(__always)
    private static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ key: StaticString) -> Bool {
        guard range.count == key.utf8CodeUnitCount else { return false }
        let wanted = key.utf8Start
        for offset in 0..<range.count where bytes[range.lowerBound + offset] != wanted[offset] { return false }
        return true
    }
}
