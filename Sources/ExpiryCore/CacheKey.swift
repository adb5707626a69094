/// Redis keys for one member. The `{…}` hash tag puts all of a member's keys in one Redis
/// Cluster slot, so entry and generation can be read and written together atomically.
public enum CacheKey {
    /// `pe:{<campaign>|<member>}:entry`
    public static func entry(campaign: String, member: String) -> String {
        key(campaign: campaign, member: member, suffix: "}:entry")
    }

    /// `pe:{<campaign>|<member>}:gen` — bumped to fence refills that started before an invalidation.
    public static func generation(campaign: String, member: String) -> String {
        key(campaign: campaign, member: member, suffix: "}:gen")
    }

    /// `pe:{<campaign>|<member>}:event:<id>` — marks a webhook event as handled for this member,
    /// in the member's slot so the invalidation and the mark are one atomic script.
    public static func handledEvent(campaign: String, member: String, eventID: String) -> String {
        key(campaign: campaign, member: member, suffix: "}:event:") + eventID
    }

    /// `pe:campaign:{<spelling>}:aka` — the other spellings (id ↔ names) of one campaign.
    public static func campaignSpellings(_ campaign: String) -> String {
        var out: [UInt8] = Array("pe:campaign:{".utf8)
        appendEscaped(campaign, to: &out)
        out.append(contentsOf: "}:aka".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    private static func key(campaign: String, member: String, suffix: StaticString) -> String {
        var out: [UInt8] = Array("pe:{".utf8)
        out.reserveCapacity(campaign.utf8.count + member.utf8.count + 16)
        appendEscaped(campaign, to: &out)
        out.append(UInt8(ascii: "|"))
        appendEscaped(member, to: &out)
        suffix.withUTF8Buffer { out.append(contentsOf: $0) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Escapes the characters that delimit the hash tag and the separator (and `%` itself, so the
    /// escaping is reversible): distinct (campaign, member) pairs always give distinct keys, and a
    /// `}` in a code cannot end the hash tag early.
    private static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "|"):
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigits[Int(byte >> 4)])
                out.append(upperHexDigits[Int(byte & 0xF)])
            default:
                out.append(byte)
            }
        }
    }
}
