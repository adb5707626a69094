/// `VOUCHERIFY_RATE_LIMIT`: how many upstream calls the whole fleet may make per window
/// (`N/sec`, `N/min` or `N/hour`). Unset, only Voucherify's rate-limit headers limit calls.
public struct RateLimitSetting: Equatable, Sendable {
    public enum Window: String, CaseIterable, Sendable {
        case second = "sec"
        case minute = "min"
        case hour

        public var milliseconds: Int64 {
            switch self {
            case .second: return 1_000
            case .minute: return 60_000
            case .hour: return 3_600_000
            }
        }
    }

    /// Keeps every number of the budget (N × window in milliseconds) far below 2^53, where the
    /// Lua script's doubles stop being exact integers, and far above any Voucherify plan.
    public static let maxRequests = 1_000_000

    public let requests: Int
    public let window: Window

    public init(parsing text: String) throws(ConfigurationError) {
        let problem = ConfigurationError(
            variable: "VOUCHERIFY_RATE_LIMIT",
            problem: "must be N/sec, N/min or N/hour with N from 1 to \(Self.maxRequests) (e.g. 100/min), got \"\(text)\"")
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let count = parts[0].wholeNumber(maxDigits: 7),
              (1...Self.maxRequests).contains(count), let unit = Window(rawValue: parts[1].lowercased()) else { throw problem }
        requests = count
        window = unit
    }
}

/// `VOUCHERIFY_INTERACTIVE_RESERVE`: the share of the budget (0…1) that warming may not touch,
/// so interactive reads keep working while a warming job runs.
public struct InteractiveReserve: Equatable, Sendable {
    public static let standard = InteractiveReserve(share: 0.5)

    public let share: Double

    private init(share: Double) { self.share = share }

    /// A plain decimal: `0`, `1`, `0.5`, `0.25`… (no sign, exponent, hex, `nan` or `inf`).
    public init(parsing text: String) throws(ConfigurationError) {
        let problem = ConfigurationError(variable: "VOUCHERIFY_INTERACTIVE_RESERVE",
                                         problem: "must be a share from 0 to 1 (e.g. 0.5), got \"\(text)\"")
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard text.utf8.count <= 20, (1...2).contains(parts.count),
              parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } }),
              let share = Double(text), (0...1).contains(share) else { throw problem }
        self.share = share
    }
}

private extension Substring {
    /// Only ASCII digits (no sign), at most `maxDigits` of them, so the value cannot overflow.
    func wholeNumber(maxDigits: Int) -> Int? {
        guard !isEmpty, utf8.count <= maxDigits, utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        return Int(self)
    }
}
