/// Where a warm job stands, for progress lines and the summary.
public struct WarmProgress: Equatable, Sendable {
    public var requested: Int
    public var warmed: Int
    public var alreadyFresh: Int
    public var failed: Int
    public var notDone: Int
    public var elapsedMilliseconds: Int64

    /// Members with an outcome: warm, already fresh or failed.
    public var done: Int { warmed + alreadyFresh + failed }
    /// Members still to be answered for (not done yet, and not given up on).
    public var pending: Int { max(0, requested - done - notDone) }

    public var membersPerSecond: Double {
        elapsedMilliseconds > 0 ? Double(done) * 1000 / Double(elapsedMilliseconds) : 0
    }

    /// Seconds until the pending members are done at the rate so far; nil before any is.
    public var etaSeconds: Int? {
        if pending == 0 { return 0 }
        let rate = membersPerSecond
        guard rate > 0 else { return nil }
        return Int(min((Double(pending) / rate).rounded(.up), Double(Int32.max)))
    }
}

/// The text the job writes to stderr. Pure.
public enum ProgressText {
    /// One line a log collector can read, e.g.
    /// `warm progress: done=1200/2000 warmed=1100 fresh=80 failed=20 pending=800 rate=240.0/s eta=3s`.
    public static func line(_ progress: WarmProgress) -> String {
        "warm progress: done=\(progress.done)/\(progress.requested) warmed=\(progress.warmed) fresh=\(progress.alreadyFresh)"
            + " failed=\(progress.failed) pending=\(progress.pending) rate=\(oneDecimal(progress.membersPerSecond))/s"
            + " eta=\(progress.etaSeconds.map { "\($0)s" } ?? "unknown")"
    }

    /// A bar for a terminal, redrawn in place: starts with `\r` and clears what an earlier,
    /// longer bar left on the line.
    public static func bar(_ progress: WarmProgress, width: Int = 30) -> String {
        let share = progress.requested > 0 ? Double(progress.done + progress.notDone) / Double(progress.requested) : 1
        let filled = Int((share * Double(width)).rounded(.down))
        let eta = progress.etaSeconds.map { duration(milliseconds: Int64($0) * 1000, tenths: false) } ?? "?"
        return "\r[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
            + " \(progress.done)/\(progress.requested) \(Int((share * 100).rounded(.down)))%"
            + "  \(oneDecimal(progress.membersPerSecond))/s  ETA \(eta)  failed \(progress.failed)\u{1B}[K"
    }

    /// The closing report.
    public static func summary(_ ledger: WarmLedger, members: MemberList, elapsedMilliseconds: Int64) -> String {
        let progress = ledger.progress(elapsedMilliseconds: elapsedMilliseconds)
        let ending: String
        switch ledger.stopReason {
        case nil: ending = "completed"
        case .timedOut?: ending = "stopped at the --timeout"
        case .interrupted?: ending = "interrupted"
        }
        let failedByCode = tally(ledger.failures.map(\.code))
        let notDoneByReason = tally(ledger.notDone.map(\.reason.error))
        let rows: [(String, String)] = [
            ("requested", "\(progress.requested) distinct members"),
            ("warmed", "\(progress.warmed)"),
            ("already fresh", "\(progress.alreadyFresh)"),
            ("failed", "\(progress.failed)" + (failedByCode.isEmpty ? "" : " (\(failedByCode))")),
            ("not done", "\(progress.notDone)" + (notDoneByReason.isEmpty ? "" : " (\(notDoneByReason))")),
            ("skipped lines", "\(members.blankLines + members.duplicateLines) (blank: \(members.blankLines), duplicate: \(members.duplicateLines))"),
            ("elapsed", duration(milliseconds: elapsedMilliseconds, tenths: true)),
            ("rate", "\(oneDecimal(progress.membersPerSecond)) members/s"),
        ]
        let labelWidth = rows.map(\.0.count).max() ?? 0
        return (["warm summary: \(ending)"] + rows.map { label, value in
            "  \(label):" + String(repeating: " ", count: labelWidth - label.count + 1) + value
        }).joined(separator: "\n") + "\n"
    }

    /// `code: count` pairs, most frequent first (ties by name), e.g. `not_found: 18, internal: 2`.
    private static func tally(_ values: [String]) -> String {
        var counts: [String: Int] = [:]
        for value in values { counts[value, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key): \($0.value)" }.joined(separator: ", ")
    }

    static func oneDecimal(_ value: Double) -> String {
        let tenths = Int(min(max(0, value) * 10, Double(Int32.max)).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// `8.3s` (or `8s` without tenths) under a minute, `2m05s` under an hour, `1h02m` beyond.
    static func duration(milliseconds: Int64, tenths: Bool) -> String {
        let seconds = max(0, milliseconds) / 1000
        func twoDigits(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        if seconds < 60 {
            return tenths ? "\(seconds).\(max(0, milliseconds) % 1000 / 100)s" : "\(seconds)s"
        }
        if seconds < 3600 { return "\(seconds / 60)m\(twoDigits(seconds % 60))s" }
        return "\(seconds / 3600)h\(twoDigits(seconds % 3600 / 60))m"
    }
}
