import ExpiryDomain

/// The clock of campaign exports, from `EXPORT_REFRESH_SECONDS`: when an aggregate is due for a
/// refresh, how patiently a job polls, how long its lease lives. Pure, so it is tested alone.
struct ExportTiming: Equatable, Sendable {
    /// `EXPORT_REFRESH_SECONDS`.
    var refreshMilliseconds: Int64
    /// The job's lease; renewed every third of it while the job runs, so a dead job's campaign
    /// is free again within a minute.
    var leaseMilliseconds: Int64 = 60_000
    /// After a failed attempt, the next waits this long (the fleet's, not per replica), doubling
    /// with each failure in a row up to `maxFailureCooldownMilliseconds`: an export costs
    /// Voucherify real work, and a failure that keeps happening must not cost it one a minute.
    var failureCooldownMilliseconds: Int64
    /// The longest wait after failures: the refresh interval (at least the first cooldown). Also
    /// the wait after a failure that waiting will not cure soon (an unknown campaign, an export
    /// we cannot read).
    var maxFailureCooldownMilliseconds: Int64
    /// How long the job state (the export under way, the failures and the next attempt's
    /// instant) is kept: a day, and always past the longest cooldown it may hold.
    var jobLifetimeMilliseconds: Int64
    /// Failures in a row counted for the backoff (past this the cooldown is the longest anyway).
    static let maxCountedFailures = 40
    /// How long a stored aggregate lives after its last refresh: a week past the last time anyone
    /// could still be refreshing it, and never less than two refresh intervals.
    var dataLifetimeMilliseconds: Int64
    /// A downloaded export with more malformed rows than this share (or with malformed rows and
    /// none counted) is refused whole: the previous aggregate stays rather than one that lost
    /// a part of the campaign.
    var maxMalformedShare = 0.1
    /// An export not done this long after it was asked for is given up; a successor replica
    /// follows an export younger than this instead of asking for another.
    var exportTimeoutMilliseconds: Int64 = 30 * 60_000
    /// Polls of the export's status: the first after this, then doubling up to `maxPollMilliseconds`.
    var firstPollMilliseconds: Int64 = 500
    var maxPollMilliseconds: Int64 = 10_000
    /// Consecutive failed polls (network, 5xx, budget spent) before the attempt is given up.
    var maxFailedPolls = 5
    /// Fresh download URLs asked for after the download host refused an expired token.
    var maxTokenRenewals = 3
    /// How often a job whose export is done looks for a free download slot.
    var downloadSlotRetryMilliseconds: Int64 = 100
    /// Each call's bound, including its wait for the rate budget.
    var callMilliseconds: Int64 = 60_000
    /// How often one worker per replica looks for campaigns due for a refresh.
    var sweepMilliseconds: Int64
    /// How long a first caller is told to wait before asking again.
    var firstExportRetryAfterSeconds = 5

    init(refreshSeconds: Int) {
        refreshMilliseconds = Int64(refreshSeconds) * 1000
        failureCooldownMilliseconds = min(refreshMilliseconds, 60_000)
        maxFailureCooldownMilliseconds = max(refreshMilliseconds, failureCooldownMilliseconds)
        dataLifetimeMilliseconds = max(8 * 86_400_000, 2 * refreshMilliseconds)
        jobLifetimeMilliseconds = max(86_400_000, maxFailureCooldownMilliseconds + leaseMilliseconds)
        sweepMilliseconds = min(max(refreshMilliseconds / 4, 1000), 60_000)
    }

    /// The wait before the next attempt after `failures` failed attempts in a row (at least 1).
    func failureCooldown(afterFailures failures: Int) -> Int64 {
        let doublings = min(max(0, failures - 1), Self.maxCountedFailures)
        return min(failureCooldownMilliseconds.multipliedSaturating(by: Int64(1) << Int64(doublings)), maxFailureCooldownMilliseconds)
    }

    /// Whether an export with these row counts is too damaged to replace the previous aggregate.
    func refuses(_ rows: ExportRowCounts) -> Bool {
        rows.malformed > 0 && (rows.counted == 0 || Double(rows.malformed) > maxMalformedShare * Double(rows.total))
    }

    /// The delay before poll number `poll` (1-based) of one export.
    func pollDelay(before poll: Int) -> Int64 {
        var delay = firstPollMilliseconds
        for _ in 1..<max(1, poll) where delay < maxPollMilliseconds { delay *= 2 }
        return min(delay, maxPollMilliseconds)
    }

    /// When an aggregate produced at `generatedAt` stops being current: `EXPORT_REFRESH_SECONDS`
    /// later, or at its next deduction instant if that comes first (Voucherify's nightly job then
    /// turns ACTIVE points EXPIRED).
    func refreshDue(generatedAt: Int64, deductionDue: Int64?) -> Int64 {
        let byAge = generatedAt.addingSaturating(refreshMilliseconds)
        guard let deductionDue else { return byAge }
        return min(byAge, deductionDue)
    }
}
