import ArgumentParser
import WarmJob

struct Warm: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Warm the cache of a running service for a list of members (WarmMembers calls over HTTP/2).",
        discussion: """
            Members come from --members-file FILE, or standard input with - : one card code per line, or a \
            CSV with a `code` column. Progress goes to stderr (a live bar on a terminal, a line every \
            --progress-interval seconds otherwise), then a summary. Ctrl-C or SIGTERM stops sending and waits \
            for the calls in flight (a second one abandons them).
            Exit codes: 0 every member warm or already fresh; 1 some failed or were left not done \
            (see --failed-out); 2 bad usage, unreadable input, or the service unreachable.
            """)

    // Values are taken as text and checked by WarmConfiguration, so that every bad value is one
    // line naming the flag and exit code 2.
    @Option(help: ArgumentHelp("Base URL of the service: http:// speaks h2c, https:// HTTP/2 over TLS (default \(WarmConfiguration.defaultService)).", valueName: "URL"))
    var service: String?
    @Option(help: ArgumentHelp("Loyalty campaign id (camp_…) or name (required).", valueName: "C"))
    var campaign: String?
    @Option(help: ArgumentHelp("File of member codes: one per line, or a CSV with a `code` column; - for standard input.", valueName: "FILE"))
    var membersFile: String?
    @Flag(help: "Refresh members even when their cached answer is fresh.")
    var force = false
    @Option(help: ArgumentHelp("Members per WarmMembers call, 1–1000 (default 100).", valueName: "N"))
    var batch: String?
    @Option(help: ArgumentHelp("WarmMembers calls in flight, 1–32 (default 2).", valueName: "N"))
    var concurrency: String?
    @Option(help: ArgumentHelp("Limit for the whole job; members not reached by then are left not done (default 3600).", valueName: "SECONDS"))
    var timeout: String?
    @Option(help: ArgumentHelp("Write a CSV (code,error,message) of every member that failed or was left not done; usable as --members-file. Until the job ends it lists every member as not_started.", valueName: "FILE"))
    var failedOut: String?
    @Option(help: ArgumentHelp("Seconds between progress lines when stderr is not a terminal (default 5).", valueName: "SECONDS"))
    var progressInterval: String?
    @Option(name: .customLong("cacert"),
            help: ArgumentHelp("PEM file of the certificate authorities to trust for an https:// --service instead of the system's (a private CA); the certificate is always verified.", valueName: "FILE"))
    var caCertificate: String?
    /// `-` alone means standard input; anything else here is a usage error (exit 2).
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var otherArguments: [String] = []

    func run() throws {
        var arguments = WarmConfiguration.Arguments()
        arguments.service = service
        arguments.campaign = campaign
        arguments.membersFile = membersFile
        arguments.standardInput = otherArguments.contains("-")
        arguments.unexpected = otherArguments.filter { $0 != "-" }
        arguments.force = force
        arguments.batch = batch
        arguments.concurrency = concurrency
        arguments.timeout = timeout
        arguments.failedOut = failedOut
        arguments.progressInterval = progressInterval
        arguments.caCertificate = caCertificate
        let exitCode = WarmRunner.run(arguments)
        if exitCode != 0 { throw ExitCode(exitCode) }
    }
}
