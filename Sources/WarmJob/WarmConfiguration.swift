/// The warm job's settings, validated. Built from the command line's raw text so that every bad
/// value gets the same treatment: one line naming the flag, exit code 2.
public struct WarmConfiguration: Equatable, Sendable {
    /// The service's base URL, without a trailing slash.
    public var service: String
    public var campaign: String
    public var members: MemberSource
    public var force: Bool
    public var batchSize: Int
    public var concurrency: Int
    public var timeoutMilliseconds: Int64
    public var failedOutPath: String?
    public var progressIntervalMilliseconds: Int
    /// `--cacert`: PEM file of the CAs to trust for an https:// service (the system's otherwise).
    public var caCertificatePath: String?

    public static let defaultService = "http://127.0.0.1:8080"
    public static let batchSizes = 1...1000
    public static let concurrencies = 1...32
    /// The service refuses longer campaign and member values (`invalid_argument`).
    public static let maxValueBytes = 512

    /// The flags as typed; nil when not given.
    public struct Arguments: Sendable {
        public var service: String?
        public var campaign: String?
        public var membersFile: String?
        /// A bare `-` was given: read standard input.
        public var standardInput = false
        public var force = false
        public var batch: String?
        public var concurrency: String?
        public var timeout: String?
        public var failedOut: String?
        public var progressInterval: String?
        public var caCertificate: String?
        /// Anything else on the command line.
        public var unexpected: [String] = []

        public init() {}
    }

    public init(_ arguments: Arguments) throws(WarmUsageError) {
        if let first = arguments.unexpected.first { throw WarmUsageError("unexpected argument \(first)") }
        service = try Self.serviceURL(arguments.service ?? Self.defaultService)

        guard let campaign = arguments.campaign.map({ trimmed($0) }), !campaign.isEmpty else {
            throw WarmUsageError("--campaign is required (a campaign id camp_… or its name)")
        }
        guard campaign.utf8.count <= Self.maxValueBytes else {
            throw WarmUsageError("--campaign is longer than \(Self.maxValueBytes) bytes")
        }
        self.campaign = campaign

        switch (arguments.membersFile, arguments.standardInput) {
        case (nil, false): throw WarmUsageError("--members-file FILE (or - for standard input) is required")
        case (_?, true): throw WarmUsageError("give either --members-file or -, not both")
        case (nil, true), ("-", false): members = .standardInput
        case (let path?, false):
            guard !path.isEmpty else { throw WarmUsageError("--members-file must name a file") }
            members = .file(path)
        }

        force = arguments.force
        batchSize = try Self.integer(arguments.batch, flag: "--batch", default: 100, range: Self.batchSizes)
        concurrency = try Self.integer(arguments.concurrency, flag: "--concurrency", default: 2, range: Self.concurrencies)
        timeoutMilliseconds = try Self.milliseconds(arguments.timeout, flag: "--timeout", default: 3600, max: 7 * 86_400)
        progressIntervalMilliseconds = Int(try Self.milliseconds(arguments.progressInterval, flag: "--progress-interval", default: 5, max: 3600))
        if let path = arguments.failedOut, path.isEmpty { throw WarmUsageError("--failed-out must name a file") }
        failedOutPath = arguments.failedOut
        if let path = arguments.caCertificate {
            guard !path.isEmpty else { throw WarmUsageError("--cacert must name a file") }
            guard usesTLS else { throw WarmUsageError("--cacert needs an https:// --service (http:// has no certificate to check)") }
        }
        caCertificatePath = arguments.caCertificate
    }

    private static func serviceURL(_ text: String) throws(WarmUsageError) -> String {
        let url = trimmed(text)
        let rest: Substring
        if url.lowercased().hasPrefix("http://") {
            rest = url.dropFirst(7)
        } else if url.lowercased().hasPrefix("https://") {
            rest = url.dropFirst(8)
        } else {
            throw WarmUsageError("--service must be an http:// or https:// URL, got \"\(text)\"")
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.isEmpty, !authority.hasPrefix(":"), rest.allSatisfy({ !$0.isWhitespace && $0 != "?" && $0 != "#" }) else {
            throw WarmUsageError("--service must be an http:// or https:// URL with a host, got \"\(text)\"")
        }
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    public var usesTLS: Bool { service.lowercased().hasPrefix("https://") }

    private static func integer(_ text: String?, flag: String, default value: Int, range: ClosedRange<Int>) throws(WarmUsageError) -> Int {
        guard let text else { return value }
        guard let number = Int(trimmed(text)), range.contains(number) else {
            throw WarmUsageError("\(flag) must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return number
    }

    /// Seconds, fractions allowed, above 0 and at most `max`.
    private static func milliseconds(_ text: String?, flag: String, default seconds: Int, max: Int) throws(WarmUsageError) -> Int64 {
        guard let text else { return Int64(seconds) * 1000 }
        guard let value = Double(trimmed(text)), value.isFinite, value > 0, value <= Double(max) else {
            throw WarmUsageError("\(flag) must be a number of seconds above 0 and at most \(max), got \"\(text)\"")
        }
        return Swift.max(1, Int64((value * 1000).rounded()))
    }
}
