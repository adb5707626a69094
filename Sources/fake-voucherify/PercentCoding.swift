/// Percent-decoding of path segments and query strings, byte-exact (no Foundation guessing).
enum PercentCoding {
    /// Decodes `%XX` escapes (and `+` as space when asked). nil on a bad escape or invalid UTF-8.
    static func decode(_ text: String, plusIsSpace: Bool) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var it = Array(text.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard let h = it.popFirst(), let l = it.popFirst(), let hv = hex(h), let lv = hex(l) else { return nil }
                bytes.append(hv << 4 | lv)
            } else if plusIsSpace && b == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// `a=1&b=x%20y` → [("a","1"),("b","x y")]. nil when an escape is malformed.
    static func parseQuery(_ query: String) -> [(String, String)]? {
        var result: [(String, String)] = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = decode(String(kv[0]), plusIsSpace: true),
                  let value = decode(kv.count > 1 ? String(kv[1]) : "", plusIsSpace: true) else { return nil }
            result.append((key, value))
        }
        return result
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
