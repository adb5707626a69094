import Codecs

/// What a caller's `cache-control` header asks of the cache (contract, "Request directives"):
/// `no-cache` reads Voucherify; `max-age=N` accepts a cached answer only up to N seconds old.
/// Other directives are ignored, as is anything malformed.
struct CacheDirectives: Equatable, Sendable {
    var noCache = false
    var maxAgeSeconds: Int64?

    static let none = CacheDirectives()

    init(noCache: Bool = false, maxAgeSeconds: Int64? = nil) {
        self.noCache = noCache
        self.maxAgeSeconds = maxAgeSeconds
    }

    /// Parses a `cache-control` value: comma-separated, names case-insensitive, `max-age` as
    /// digits (optionally quoted); huge values saturate. The smallest `max-age` given wins.
    init(header: String?) {
        guard let header else { return }
        for part in header.split(separator: ",") {
            let directive = trimmingOWS(part)
            let equals = directive.firstIndex(of: "=")
            let name = trimmingOWS(directive[..<(equals ?? directive.endIndex)]).lowercased()
            if name == "no-cache" {
                noCache = true
            } else if name == "max-age", let equals {
                var value = trimmingOWS(directive[directive.index(after: equals)...])
                if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
                guard let seconds = Self.saturatingSeconds(value) else { continue }
                maxAgeSeconds = min(maxAgeSeconds ?? .max, seconds)
            }
        }
    }

    /// Whether a cached record of this age may answer the caller at all.
    func accepts(ageSeconds: Int64) -> Bool {
        !noCache && ageSeconds <= (maxAgeSeconds ?? .max)
    }

    private static func saturatingSeconds(_ digits: Substring) -> Int64? {
        guard !digits.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in digits.utf8 {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return .max }
            value = sum
        }
        return value
    }
}
