/// Where an http(s) URL points: scheme, host and port, compared as browsers compare origins
/// (scheme and host case-insensitive, an omitted port equal to the scheme's default). Deciding
/// whether a URL may receive the credentials rests on it, so it refuses rather than guesses:
/// credentials in the authority (`https://api.voucherify.io@evil.example/` names evil.example)
/// and any character a host name or IP literal does not use.
struct URLOrigin: Equatable, CustomStringConvertible {
    /// Lowercased: `http` or `https`.
    let scheme: String
    /// Lowercased; an IPv6 literal keeps its brackets.
    let host: String
    let port: Int

    /// Why a URL has no origin we accept; the text fits after "the URL …".
    struct Invalid: Error, Equatable {
        let reason: String
    }

    init(url: String) throws(Invalid) {
        let lowered = url.lowercased()
        guard let scheme = ["http", "https"].first(where: { lowered.hasPrefix($0 + "://") }) else {
            throw Invalid(reason: "does not start with http:// or https://")
        }
        let rest = url.dropFirst(scheme.count + 3)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.contains("@") else { throw Invalid(reason: "carries credentials") }
        guard authority.allSatisfy(Self.isAuthorityCharacter) else { throw Invalid(reason: "has a character no host name has") }
        let (host, port) = try Self.split(authority: authority)
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port ?? (scheme == "https" ? 443 : 80)
    }

    var description: String { "\(scheme)://\(host):\(port)" }

    /// `host[:port]` of an authority without credentials; an IPv6 literal keeps its colons inside
    /// brackets, and a port follows the last colon outside them.
    static func split(authority: Substring) throws(Invalid) -> (host: Substring, port: Int?) {
        if authority.hasPrefix("["), !authority.contains("]") { throw Invalid(reason: "has an unclosed IPv6 bracket") }
        let hostEnd = authority.lastIndex(of: "]") ?? authority.startIndex
        guard let colon = authority[hostEnd...].lastIndex(of: ":") else {
            guard !authority.isEmpty else { throw Invalid(reason: "has no host") }
            return (authority, nil)
        }
        let host = authority[..<colon]
        guard let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port), !host.isEmpty else {
            throw Invalid(reason: "has a bad port")
        }
        return (host, port)
    }

    private static func isAuthorityCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isLetter || character.isNumber || "-._:[]".contains(character))
    }
}
