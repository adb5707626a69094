import Dispatch
import EventLoop
import ExpiryDomain
import Logging
import Synchronization
import Voucherify

/// The process's downloads of campaign exports at once: each holds a parser's and aggregator's
/// memory (tens of MiB for a million rows) and a loop's time, so a replica refreshing many
/// campaigns takes them a few at a time. Shared by every worker.
final class ExportDownloadSlots: Sendable {
    private let limit: Int
    private let taken = Mutex(0)

    init(limit: Int = 2) { self.limit = limit }

    func tryAcquire() -> Bool {
        taken.withLock { taken in
            guard taken < limit else { return false }
            taken += 1
            return true
        }
    }

    func release() { taken.withLock { $0 -= 1 } }
}

/// One export of one campaign, from a held lease to a stored aggregate: ask Voucherify for the
/// export (or follow one a dead job asked for), poll it with backoff until DONE or ERROR, stream
/// the CSV through `CampaignAggregator` as it downloads, and store the aggregate. Every call
/// spends the shared rate budget at warming priority (`admission`). The lease is renewed while
/// the job runs; a job that loses it stops without writing. A failure keeps the stored aggregate
/// and records why, for callers and for the cooldown. Loop-confined.
final class CampaignExportJob {
    /// How a job ended (the label of `points_expiry_campaign_exports_total`).
    enum Outcome: String, CaseIterable {
        /// A new aggregate is stored.
        case stored
        /// Done, but a newer aggregate was already stored (another job's).
        case superseded
        /// Voucherify finished the export with status ERROR.
        case exportError = "export_error"
        /// Voucherify says the campaign does not exist.
        case campaignNotFound = "campaign_not_found"
        /// Any other failure: calls that failed, an unreadable export, a timeout.
        case failed
        /// Another job took the lease (this one paused too long): stopped without writing.
        case leaseLost = "lease_lost"
        /// The worker is shutting down; the export is followed by the next job.
        case cancelled
    }

    let campaign: String
    private let token: [UInt8]
    private let loop: Loop
    private let voucherify: VoucherifyAPI
    private let admission: any UpstreamAdmission
    private let store: CampaignExportStore
    private let downloadSlots: ExportDownloadSlots
    private var holdsDownloadSlot = false
    private let timing: ExportTiming
    private let schedule: DeductionSchedule
    private let logger: Logger
    private var onFinish: ((Outcome, ExportRowCounts?) -> Void)?
    private var renewTimer: Timer?
    private var pollTimer: Timer?
    private var exportID: String?
    /// Attempts that failed in a row before this job (sets the next cooldown).
    private var failuresBefore = 0
    /// When the export was asked for (ms since 1970): the answer's `generated_at`. Voucherify
    /// reads the data after this, so the age shown is never less than the truth.
    private var postedAt: Int64 = 0
    private var polls = 0
    private var failedPolls = 0
    private var tokenRenewals = 0
    private var aggregator = CampaignAggregator()
    /// Why the aggregator stopped the download.
    private var formatError: ExportFormatError?
    private let startedAt: Int64

    init(campaign: String, token: [UInt8], loop: Loop, voucherify: VoucherifyAPI, admission: any UpstreamAdmission,
         store: CampaignExportStore, downloadSlots: ExportDownloadSlots, timing: ExportTiming, schedule: DeductionSchedule, logger: Logger,
         onFinish: @escaping (Outcome, _ rows: ExportRowCounts?) -> Void) {
        self.campaign = campaign
        self.token = token
        self.loop = loop
        self.voucherify = voucherify
        self.admission = admission
        self.store = store
        self.downloadSlots = downloadSlots
        self.timing = timing
        self.schedule = schedule
        self.logger = logger
        self.onFinish = onFinish
        startedAt = loop.monotonicMilliseconds
    }

    var isFinished: Bool { onFinish == nil }

    /// Runs the job under the lease `grant` came with: a new export, or one to follow.
    func start(_ grant: LeaseGrant) {
        loop.assertInLoop()
        failuresBefore = grant.failures
        armRenewal()
        if let id = grant.resumeExportID {
            exportID = id
            postedAt = grant.resumePostedAt
            logger.info("following a campaign export asked for earlier", metadata: ["campaign": "\(campaign)", "export": "\(id)"])
            schedulePoll()
        } else {
            requestExport()
        }
    }

    /// Stops the job (shutdown). The lease is left to expire and the export id stays recorded,
    /// so the next job follows the same export instead of asking for another.
    func cancel() {
        finish(.cancelled)
    }

    private var callDeadline: Int64 { loop.monotonicMilliseconds + timing.callMilliseconds }

    private func requestExport() {
        postedAt = loop.nowMilliseconds
        voucherify.createPointsExpirationExport(campaign: campaign, deadline: callDeadline, admission: admission) { [weak self] result in
            guard let self, !isFinished else { return }
            switch result {
            case .success(let status):
                exportID = status.id
                store.recordExport(campaign: campaign, token: token, exportID: status.id, postedAt: postedAt, timing: timing)
                logger.info("asked Voucherify for a campaign export", metadata: ["campaign": "\(campaign)", "export": "\(status.id)"])
                follow(status)
            case .failure(.campaignNotFound):
                fail(.campaignNotFound, "Voucherify does not know the campaign", keepExport: false)
            case .failure(let error):
                // Never retried here: a second POST would be a second export. The cooldown paces
                // the next attempt.
                fail(.failed, "asking for the export failed: \(error)", keepExport: false)
            }
        }
    }

    private func follow(_ status: ExportStatus) {
        switch status.state {
        case .done:
            guard let url = status.resultURL else { return fail(.failed, "the export is DONE without a download URL", keepExport: false) }
            guard holdsDownloadSlot || downloadSlots.tryAcquire() else { return waitForDownloadSlot(status) }
            holdsDownloadSlot = true
            download(url)
        case .error:
            if let message = status.errorMessage {
                logger.debug("Voucherify's reason for the failed export", metadata: ["campaign": "\(campaign)", "reason": "\(message)"])
            }
            fail(.exportError, "Voucherify could not produce the export (status ERROR)", keepExport: false)
        default:
            schedulePoll()
        }
    }

    /// Other exports are downloading: try again shortly (a URL whose token expires meanwhile is
    /// renewed like any other). A timer, not a queue: the slots belong to every worker's loop.
    private func waitForDownloadSlot(_ status: ExportStatus) {
        guard loop.nowMilliseconds - postedAt < timing.exportTimeoutMilliseconds else {
            return fail(.failed, "no download slot came free within \(timing.exportTimeoutMilliseconds / 60_000) minutes", keepExport: true)
        }
        do {
            pollTimer = try Timer.schedule(on: loop, after: Int(timing.downloadSlotRetryMilliseconds)) { [weak self] in
                self?.pollTimer = nil
                self?.follow(status)
            }
        } catch {
            fail(.failed, "could not schedule a wait for a download slot: \(error)", keepExport: true)
        }
    }

    private func schedulePoll() {
        guard loop.nowMilliseconds - postedAt < timing.exportTimeoutMilliseconds else {
            return fail(.failed, "the export was not done within \(timing.exportTimeoutMilliseconds / 60_000) minutes", keepExport: false)
        }
        polls += 1
        do {
            pollTimer = try Timer.schedule(on: loop, after: Int(timing.pollDelay(before: polls))) { [weak self] in
                self?.pollTimer = nil
                self?.poll()
            }
        } catch {
            fail(.failed, "could not schedule a poll: \(error)", keepExport: true)
        }
    }

    private func poll() {
        guard !isFinished, let exportID else { return }
        voucherify.exportStatus(id: exportID, deadline: callDeadline, admission: admission) { [weak self] result in
            guard let self, !isFinished else { return }
            switch result {
            case .success(let status):
                failedPolls = 0
                follow(status)
            case .failure(let error) where !error.isOutage:
                // Not found, refused: this export will not come.
                fail(.failed, "polling the export failed: \(error)", keepExport: false)
            case .failure(let error):
                failedPolls += 1
                guard failedPolls < timing.maxFailedPolls else {
                    return fail(.failed, "polling the export failed \(failedPolls) times: \(error)", keepExport: true)
                }
                schedulePoll()
            }
        }
    }

    private func download(_ url: String) {
        aggregator = CampaignAggregator()
        formatError = nil
        // The download's own limit is VoucherifyConfiguration's; the job's is the export's.
        voucherify.downloadExport(url: url, deadline: loop.monotonicMilliseconds + timing.exportTimeoutMilliseconds,
                                  admission: admission, receive: { [weak self] chunk in
            guard let self, !isFinished else { return false }
            do throws(ExportFormatError) {
                try aggregator.feed(chunk)
                return true
            } catch {
                formatError = error
                return false
            }
        }) { [weak self] result in
            guard let self, !isFinished else { return }
            switch result {
            case .success:
                aggregated()
            case .failure(.tokenRejected):
                // The URL's token expired: the export's status gives a fresh one. The slot is
                // another export's meanwhile (polls may back off for seconds).
                tokenRenewals += 1
                guard tokenRenewals <= timing.maxTokenRenewals else {
                    return fail(.failed, "the download host refused \(tokenRenewals) fresh tokens", keepExport: false)
                }
                releaseDownloadSlot()
                poll()
            case .failure(.receiverStopped):
                fail(.failed, "the export is unreadable: \(formatError.map { "\($0)" } ?? "stopped")", keepExport: false, lasting: true)
            case .failure(.failed(let error)) where error.isOutage:
                // The export is done and stays downloadable: the next attempt follows it.
                fail(.failed, "downloading the export failed: \(error)", keepExport: true)
            case .failure(let error):
                // A refused URL or request: following this export again would meet the same.
                fail(.failed, "downloading the export failed: \(error)", keepExport: false, lasting: true)
            }
        }
    }

    /// The download is whole. The aggregate is finished off the loop (sorting every card's dates
    /// takes about 0.25 s per million rows, which the loop's requests must not wait for) and
    /// comes back to it through the loop's queue; the job lets go of the aggregator first.
    private func aggregated() {
        nonisolated(unsafe) var handedOver = aggregator
        aggregator = CampaignAggregator()
        let job = LoopBound(self, loop: loop)
        DispatchQueue.global(qos: .utility).async {
            let result = Result { () throws(ExportFormatError) in try handedOver.finish() }
            job.loop.execute { job.value.finishedAggregating(result) }
        }
    }

    private func finishedAggregating(_ result: Result<CampaignAggregate, ExportFormatError>) {
        guard !isFinished else { return }
        let aggregate: CampaignAggregate
        switch result {
        case .success(let finished): aggregate = finished
        case .failure(let error): return fail(.failed, "the export is unreadable: \(error)", keepExport: false, lasting: true)
        }
        // The aggregator's memory is gone; another export may download now.
        releaseDownloadSlot()
        let rows = aggregate.rows
        var metadata: Logger.Metadata = [
            "campaign": "\(campaign)", "rows": "\(rows.total)", "active_rows": "\(rows.counted)", "skipped_rows": "\(rows.skipped)",
            "malformed_rows": "\(rows.malformed)", "days": "\(aggregate.days.count)",
            "seconds": "\(Double(loop.monotonicMilliseconds - startedAt) / 1000)",
        ]
        if rows.malformed > 0 {
            metadata["samples"] = .array(rows.samples.map { .string($0) })
            logger.warning("campaign export had malformed rows; they count nowhere", metadata: metadata)
        }
        guard !timing.refuses(rows) else {
            return fail(.failed, "\(rows.malformed) of \(rows.total) rows are malformed", keepExport: false, lasting: true, rows: rows)
        }
        let deductionDue = schedule.nextDeduction(after: Timestamp(millisecondsSince1970: postedAt), lastValidDays: aggregate.lastValidDays)
        store.save(campaign: campaign, token: token, aggregate: aggregate.encoded(), generatedAt: postedAt,
                   deductionDue: deductionDue?.millisecondsSince1970, exportID: exportID ?? "", timing: timing) { [weak self] result in
            guard let self, !isFinished else { return }
            switch result {
            case .success(let stored):
                logger.info(stored ? "campaign export stored" : "campaign export done, but a newer one is stored", metadata: metadata)
                finish(stored ? .stored : .superseded, rows: rows)
            case .failure(let error):
                fail(.failed, "storing the aggregate failed: \(error)", keepExport: true, rows: rows)
            }
        }
    }

    private func armRenewal() {
        do {
            renewTimer = try Timer.schedule(on: loop, after: Int(timing.leaseMilliseconds / 3)) { [weak self] in
                guard let self, !isFinished else { return }
                store.renew(campaign: campaign, token: token, timing: timing) { [weak self] held in
                    guard let self, !isFinished else { return }
                    guard held != false else {
                        logger.warning("campaign export lost its lease; another job took over", metadata: ["campaign": "\(campaign)"])
                        return finish(.leaseLost)
                    }
                    armRenewal()
                }
            }
        } catch {
            // Without renewals the lease simply expires; the job still finishes or fails on its own.
            logger.warning("could not arm the export lease renewal", metadata: ["error": "\(error)"])
        }
    }

    /// Ends the job failed: the stored aggregate stays. `detail` goes to the log; callers waiting
    /// for a first export see only a short phrase for the outcome. The next attempt waits a
    /// cooldown that doubles with each failure in a row, or the longest one when waiting will not
    /// soon help (`lasting`: an export we cannot read, a download refused). An unknown campaign
    /// backs off like any failure: callers hear `not_found` until the next attempt.
    private func fail(_ outcome: Outcome, _ detail: String, keepExport: Bool, lasting: Bool = false, rows: ExportRowCounts? = nil) {
        guard !isFinished else { return }
        logger.warning("campaign export failed; the previous answer stays", metadata: ["campaign": "\(campaign)", "reason": "\(detail)"])
        let now = loop.nowMilliseconds
        let cooldown = lasting ? timing.maxFailureCooldownMilliseconds : timing.failureCooldown(afterFailures: failuresBefore + 1)
        store.fail(campaign: campaign, token: token, now: now, reason: Self.callerReason(outcome, lasting: lasting),
                   campaignMissing: outcome == .campaignNotFound, keepExport: keepExport, retryAt: now.addingSaturating(cooldown),
                   timing: timing)
        finish(outcome, rows: rows)
    }

    /// What a caller waiting for a first export is told about a failure: our words, never
    /// Voucherify's or the file's.
    private static func callerReason(_ outcome: Outcome, lasting: Bool) -> String {
        switch outcome {
        case .campaignNotFound: return "Voucherify does not know the campaign"
        case .exportError: return "Voucherify could not produce the export"
        case .failed where lasting: return "the export could not be read"
        default: return "the export could not be fetched from Voucherify"
        }
    }

    private func releaseDownloadSlot() {
        guard holdsDownloadSlot else { return }
        holdsDownloadSlot = false
        downloadSlots.release()
    }

    /// `rows`: what the downloaded export held, when one was read whole.
    private func finish(_ outcome: Outcome, rows: ExportRowCounts? = nil) {
        guard let onFinish else { return }
        self.onFinish = nil
        renewTimer?.cancel()
        renewTimer = nil
        pollTimer?.cancel()
        pollTimer = nil
        releaseDownloadSlot()
        onFinish(outcome, rows)
    }
}
