/// A tiny JSON writer with ordered object keys, so answers read like Voucherify's documented ones.
/// Non-ASCII characters are written as raw UTF-8, never as `\u` escapes.
indirect enum JSONValue: Sendable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    static func int(_ v: Int) -> JSONValue { .int(Int64(v)) }

    /// Compact serialisation as UTF-8 bytes.
    var bytes: [UInt8] { Array(serialized.utf8) }

    var serialized: String {
        var out = ""
        write(into: &out, indent: nil)
        return out
    }

    /// Two-space indentation and `": "`. It differs from `serialized` only by whitespace outside
    /// strings, so removing that whitespace gives back the compact form.
    var prettySerialized: String {
        var out = ""
        write(into: &out, indent: "")
        return out
    }

    /// `indent` nil: compact; otherwise the indentation of the line this value starts on.
    private func write(into out: inout String, indent: String?) {
        switch self {
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .int(let i): out += String(i)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            JSONValue.writeContainer("[", "]", items, into: &out, indent: indent) { item, out, inner in
                item.write(into: &out, indent: inner)
            }
        case .object(let pairs):
            JSONValue.writeContainer("{", "}", pairs, into: &out, indent: indent) { pair, out, inner in
                JSONValue.writeString(pair.0, into: &out)
                out += inner == nil ? ":" : ": "
                pair.1.write(into: &out, indent: inner)
            }
        }
    }

    /// Comma-separated items between `open` and `close`; pretty: one item per line, one level deeper.
    private static func writeContainer<Item>(_ open: String, _ close: String, _ items: [Item], into out: inout String,
                                             indent: String?, _ writeItem: (Item, inout String, String?) -> Void) {
        out += open
        let inner = indent.map { $0 + "  " }
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            if let inner { out += "\n" + inner }
            writeItem(item, &out, inner)
        }
        if let indent, !items.isEmpty { out += "\n" + indent }
        out += close
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
