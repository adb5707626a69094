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

    /// Every member key starts so (`pe:{`): the prefix Redis tracks for the in-process tiers.
    static let memberKeyPrefix = "pe:{"

    /// The member whose answers hash `key` is (`answers(member:)` reversed); nil for any other key.
    static func member(answersKey key: some Collection<UInt8>) -> String? {
        let prefix = memberKeyPrefix.utf8, suffix = "}:answers".utf8
        guard key.count >= prefix.count + suffix.count, key.starts(with: prefix), key.reversed().starts(with: suffix.reversed()) else {
            return nil
        }
        let escaped = key.dropFirst(prefix.count).dropLast(suffix.count)
        // An unescaped brace cannot be in a member's part: not a key this service wrote.
        guard !escaped.contains(UInt8(ascii: "{")), !escaped.contains(UInt8(ascii: "}")),
              let member = PercentEncoding.decodePathSegment(escaped) else { return nil }
        return String(validating: member, as: UTF8.self)
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

    /// `pe:export:{<campaign>}:data` — the latest aggregated export of one campaign spelling (a
    /// hash: the aggregate, when Voucherify produced it, its next deduction instant).
    static func exportData(campaign: String) -> String {
        key(prefix: "pe:export:{", tagged: campaign, suffix: "}:data")
    }

    /// `pe:export:{<campaign>}:lease` — the one export job of that campaign in the fleet (a token).
    static func exportLease(campaign: String) -> String {
        key(prefix: "pe:export:{", tagged: campaign, suffix: "}:lease")
    }

    /// `pe:export:{<campaign>}:job` — the export under way (its id and when it was asked for) and
    /// the last failure, so that another replica resumes it instead of asking for a new one.
    static func exportJob(campaign: String) -> String {
        key(prefix: "pe:export:{", tagged: campaign, suffix: "}:job")
    }

    /// `pe:export:campaigns` — every campaign spelling asked for lately (a sorted set scored by
    /// when it was last asked), which the background refresh goes through.
    static let exportedCampaigns = "pe:export:campaigns"

    private static func key(member: String, suffix: StaticString) -> String {
        key(prefix: memberKeyPrefix, tagged: member, suffix: suffix)
    }

    private static func key(prefix: String, tagged: String, suffix: StaticString) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(tagged.utf8.count + prefix.utf8.count + suffix.utf8CodeUnitCount)
        out.append(contentsOf: prefix.utf8)
        appendEscaped(tagged, to: &out)
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
