import Codecs

/// Redis keys for one member (loyalty card codes are unique within a Voucherify project). The
/// `{…}` hash tag puts all of a member's keys in one Redis Cluster slot, so one script can read
/// and write them together atomically.
enum CacheKey {
    /// `pe:{<member>}:answers` — a hash of cached answers, one field per campaign spelling as
    /// callers asked (id or name), so one delete drops the member under every spelling.
    static func answers(member: String) -> String {
        key(member: member, suffix: "}:answers")
    }

    /// `pe:{<member>}:gen` — a unique token replaced by every invalidation, fencing off refills
    /// that started before it.
    static func generation(member: String) -> String {
        key(member: member, suffix: "}:gen")
    }

    /// `pe:{<member>}:lease:<campaign>` — who is reading this member and campaign spelling from
    /// Voucherify right now (a token), or that the last read failed moments ago (a marker).
    static func lease(member: String, campaign: String) -> String {
        key(member: member, suffix: "}:lease:") + campaign
    }

    /// `pe:{<member>}:event:<id>` — marks a webhook event as handled, in the member's slot so the
    /// invalidation and the mark are one atomic script.
    static func handledEvent(member: String, eventID: String) -> String {
        key(member: member, suffix: "}:event:") + eventID
    }

    private static func key(member: String, suffix: StaticString) -> String {
        var out: [UInt8] = Array("pe:{".utf8)
        out.reserveCapacity(member.utf8.count + 16)
        appendEscaped(member, to: &out)
        suffix.withUTF8Buffer { out.append(contentsOf: $0) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Escapes the characters that delimit the hash tag (and `%` itself, so the escaping is
    /// reversible): distinct members always give distinct keys, and a `}` in a code cannot end
    /// the hash tag early.
    private static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "{"), UInt8(ascii: "}"):
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigits[Int(byte >> 4)])
                out.append(upperHexDigits[Int(byte & 0xF)])
            default:
                out.append(byte)
            }
        }
    }
}
