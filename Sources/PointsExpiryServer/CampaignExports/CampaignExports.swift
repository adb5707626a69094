import EventLoop
import ExpiryDomain
import Logging
import RPC
import RedisClient
import Voucherify

/// A campaign's aggregate as a read serves it.
struct CampaignSnapshot {
    var aggregate: CampaignAggregate
    /// When the export was asked of Voucherify (ms since 1970).
    var generatedAt: Int64
    var deductionDue: Int64?
}

/// What GetCampaignExpiration answers with, before the request's date range is applied.
struct CampaignAnswer {
    var snapshot: CampaignSnapshot
    /// `hit` while the aggregate is current, `stale` once it is due for a refresh (which then runs).
    var source: MemberAnswer.Source
    /// Seconds since the export was asked of Voucherify (the `age` header).
    var ageSeconds: Int64

    var cacheHeaders: [(name: String, value: String)] { MemberAnswer.cacheHeaders(source, ageSeconds: ageSeconds) }
}

/// One worker's side of campaign exports: answers from the aggregates in Redis (keeping the ones
/// it decoded, so an unchanged aggregate crosses the wire and is decoded once), and starts export
/// jobs on its own loop when a campaign has none or is due — the Redis lease makes it one job per
/// campaign in the fleet. One worker per replica also sweeps the campaigns asked for lately, so
/// they are refreshed whether or not anyone asks in the meantime. Loop-confined.
final class CampaignExports {
    /// Decoded aggregates kept per worker; past this the oldest-registered are dropped.
    static let maxKnownCampaigns = 1024
    /// Export jobs one worker runs at once (mostly waiting for Voucherify; downloads are limited
    /// per process by `ExportDownloadSlots`); more wait for the next sweep or request.
    static let maxJobs = 16
    /// How often a worker re-registers a campaign it is asked for (a ZADD).
    static let registrationMilliseconds: Int64 = 60_000

    private let loop: Loop
    private let store: CampaignExportStore
    private let downloadSlots: ExportDownloadSlots
    private let voucherify: VoucherifyAPI
    /// Taken once: every export call spends the rate budget at warming priority.
    private let admission: any UpstreamAdmission
    private let timing: ExportTiming
    private let schedule: DeductionSchedule
    private let notFoundMilliseconds: Int64
    private let metrics: Metrics
    private let logger: Logger
    private var known: [String: KnownCampaign] = [:]
    private var jobs: [String: CampaignExportJob] = [:]
    /// Campaigns whose lease claim is in flight from this worker.
    private var claiming: Set<String> = []
    private var sweepTimer: Timer?
    private var closed = false

    private struct KnownCampaign {
        var snapshot: CampaignSnapshot?
        var registeredAt: Int64
    }

    init(loop: Loop, store: CampaignExportStore, downloadSlots: ExportDownloadSlots, voucherify: VoucherifyAPI,
         admission: any UpstreamAdmission, timing: ExportTiming, schedule: DeductionSchedule, notFoundSeconds: Int, metrics: Metrics,
         logger: Logger) {
        self.loop = loop
        self.store = store
        self.downloadSlots = downloadSlots
        self.voucherify = voucherify
        self.admission = admission
        self.timing = timing
        self.schedule = schedule
        notFoundMilliseconds = Int64(notFoundSeconds) * 1000
        self.metrics = metrics
        self.logger = logger
    }

    /// The campaign's latest aggregate, or why there is none. Starts a job when there is none
    /// or it is due. Completion runs on the loop.
    func answer(campaign: String, completion: @escaping (Result<CampaignAnswer, RPCError>) -> Void) {
        loop.assertInLoop()
        let now = loop.nowMilliseconds
        register(campaign, now: now)
        // Held here, not looked up again: the table may drop it before Redis answers, and Redis
        // sends no aggregate for the one the read says it holds.
        let held = known[campaign]?.snapshot
        store.read(campaign: campaign, heldGeneratedAt: held?.generatedAt) { [weak self] result in
            guard let self else { return completion(.failure(RPCError(.unavailable, "shutting down"))) }
            completion(resolve(campaign, result, held: held, now: loop.nowMilliseconds))
        }
    }

    private func resolve(_ campaign: String, _ result: Result<StoredExport, RedisError>, held: CampaignSnapshot?,
                         now: Int64) -> Result<CampaignAnswer, RPCError> {
        let stored: StoredExport
        switch result {
        case .failure(let error):
            // Redis cannot be asked: what this worker last read still beats an error.
            guard let held else { return .failure(.cacheUnavailable(error.description)) }
            return .success(serve(held, of: nil, now: now))
        case .success(let read):
            stored = read
        }
        guard let generatedAt = stored.generatedAt else { return .failure(noExportYet(campaign, stored, now: now)) }
        var snapshot: CampaignSnapshot
        if let held, held.generatedAt == generatedAt {
            snapshot = held
            // Redis is the one record of when the aggregate is due; the read brings it anyway.
            snapshot.deductionDue = stored.deductionDue
        } else if let decoded = decode(campaign, stored, generatedAt: generatedAt) {
            snapshot = decoded
        } else {
            // Unreadable (another release's format, or damage): as if there were none, and
            // replaced now rather than when it would have been due.
            if !stored.jobRunning { refreshIfDue(campaign, force: true) }
            return .failure(noExportYet(campaign, stored, now: now))
        }
        return .success(serve(snapshot, of: stored.jobRunning ? nil : campaign, now: now))
    }

    /// `refreshing`: the campaign to refresh when the aggregate is due (nil while Redis is down
    /// or a job already runs).
    private func serve(_ snapshot: CampaignSnapshot, of refreshing: String?, now: Int64) -> CampaignAnswer {
        let stale = now >= timing.refreshDue(generatedAt: snapshot.generatedAt, deductionDue: snapshot.deductionDue)
        if stale, let refreshing { refreshIfDue(refreshing) }
        return CampaignAnswer(snapshot: snapshot, source: stale ? .stale : .hit,
                              ageSeconds: MemberAnswerPolicy.ageSeconds(since: Timestamp(millisecondsSince1970: snapshot.generatedAt),
                                                                        now: Timestamp(millisecondsSince1970: now)))
    }

    /// The aggregate Redis just sent, decoded and kept for the next reads; nil when unreadable.
    private func decode(_ campaign: String, _ stored: StoredExport, generatedAt: Int64) -> CampaignSnapshot? {
        guard let bytes = stored.aggregate else { return nil }
        do {
            let snapshot = CampaignSnapshot(aggregate: try CampaignAggregate(encoded: bytes), generatedAt: generatedAt,
                                            deductionDue: stored.deductionDue)
            known[campaign, default: KnownCampaign(registeredAt: 0)].snapshot = snapshot
            return snapshot
        } catch {
            logger.warning("unreadable campaign aggregate in Redis; exporting again", metadata: ["campaign": "\(campaign)", "error": "\(error)"])
            return nil
        }
    }

    /// No aggregate: not found (remembered for CACHE_NOT_FOUND_SECONDS, or until the next attempt
    /// if later), or `unavailable` with
    /// `retry-after` while the first export runs (started here if it is not). Instants read from
    /// Redis are compared saturating: a damaged value must not trap.
    private func noExportYet(_ campaign: String, _ stored: StoredExport, now: Int64) -> RPCError {
        // Not found until the next attempt may ask again (at least CACHE_NOT_FOUND_SECONDS).
        if let notFoundAt = stored.notFoundAt,
           now.subtractingSaturating(notFoundAt) < notFoundMilliseconds || (stored.retryAt ?? .min) > now {
            return RPCError(.notFound, "loyalty campaign \"\(campaign)\" was not found in Voucherify")
        }
        if !stored.jobRunning { refreshIfDue(campaign) }
        if let retryAt = stored.retryAt, retryAt > now {
            let seconds = Int(min(max(1, retryAt.subtractingSaturating(now) / 1000 + 1), Int64(Int32.max)))
            return RPCError(.unavailable, "the first export of campaign \"\(campaign)\" failed (\(stored.failure ?? "no reason recorded")); "
                                + "the next attempt starts within \(seconds) s", retryAfterSeconds: seconds)
        }
        let seconds = timing.firstExportRetryAfterSeconds
        return RPCError(.unavailable, "campaign \"\(campaign)\" has not been exported yet; its first export is running, retry in \(seconds) s",
                        retryAfterSeconds: seconds)
    }

    /// What one claim came to, for the sweep: go on to the next campaign, or stop until the next
    /// sweep (this worker runs its most jobs, or Redis cannot be asked).
    enum ClaimStep { case next, stop }

    /// Starts an export job for `campaign` unless one runs here, this worker runs its most, or
    /// the claim script (fleet-wide) finds one running elsewhere, the data not due (`force`
    /// skips that check) or a failure's cooldown not over. `then`: how the sweep goes on.
    private func refreshIfDue(_ campaign: String, force: Bool = false, then: ((ClaimStep) -> Void)? = nil) {
        guard !closed, jobs.count + claiming.count < Self.maxJobs else { then?(.stop); return }
        guard !campaign.isEmpty, jobs[campaign] == nil, !claiming.contains(campaign) else { then?(.next); return }
        claiming.insert(campaign)
        let token = MemberCache.newToken()
        store.claim(campaign: campaign, token: token, timing: timing, now: loop.nowMilliseconds, force: force) { [weak self] claim in
            guard let self else { return }
            claiming.remove(campaign)
            guard case .claimed(let grant) = claim, !closed else { then?(claim == .unavailable || closed ? .stop : .next); return }
            let job = CampaignExportJob(campaign: campaign, token: token, loop: loop, voucherify: voucherify, admission: admission,
                                        store: store, downloadSlots: downloadSlots, timing: timing, schedule: schedule,
                                        logger: logger) { [weak self] outcome, rows in
                self?.finished(campaign, outcome, rows: rows)
            }
            jobs[campaign] = job
            job.start(grant)
            then?(.next)
        }
    }

    private func finished(_ campaign: String, _ outcome: CampaignExportJob.Outcome, rows: ExportRowCounts?) {
        jobs[campaign] = nil
        metrics.campaignExports.increment(outcome.rawValue)
        if let rows {
            metrics.campaignExportRows.increment("counted", by: Int64(rows.counted))
            metrics.campaignExportRows.increment("skipped", by: Int64(rows.skipped))
            metrics.campaignExportRows.increment("malformed", by: Int64(rows.malformed))
        }
    }

    /// Notes the campaign in Redis for the sweep, at most once a minute per worker.
    private func register(_ campaign: String, now: Int64) {
        if let known = known[campaign], now - known.registeredAt < Self.registrationMilliseconds { return }
        if known[campaign] == nil, known.count >= Self.maxKnownCampaigns {
            // Drop the longest-registered half rather than one at a time: a sort per miss would cost more.
            let keep = known.sorted { $0.value.registeredAt > $1.value.registeredAt }.prefix(Self.maxKnownCampaigns / 2)
            known = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        known[campaign, default: KnownCampaign(registeredAt: now)].registeredAt = now
        store.register(campaign: campaign, now: now)
    }

    /// This worker looks, every `sweepMilliseconds`, for campaigns asked for lately whose
    /// aggregate is due, and refreshes them. One worker per replica is enough: the lease
    /// keeps it one job per campaign in the fleet.
    func startSweeping() {
        loop.assertInLoop()
        guard !closed else { return }
        do {
            sweepTimer = try Timer.schedule(on: loop, after: Int(timing.sweepMilliseconds)) { [weak self] in
                guard let self, !closed else { return }
                store.registeredCampaigns(now: loop.nowMilliseconds, limit: CampaignExportStore.maxRegisteredCampaigns) { [weak self] campaigns in
                    self?.sweep(campaigns[...])
                }
            }
        } catch {
            logger.error("could not arm the campaign export sweep; campaigns refresh only when asked for", metadata: ["error": "\(error)"])
        }
    }

    /// Claims the due campaigns one after another (a claim that finds one fresh costs one
    /// script), until this worker runs its most jobs or Redis cannot be asked; then the next
    /// sweep is armed. Each step starts from the loop, so a run of answers that come at once
    /// (Redis down) never deepens the stack.
    private func sweep(_ campaigns: ArraySlice<String>) {
        guard !closed else { return }
        guard let campaign = campaigns.first else { return startSweeping() }
        refreshIfDue(campaign) { [weak self] step in
            guard let self else { return }
            switch step {
            case .stop: startSweeping()
            case .next: loop.nextTick { [weak self] in self?.sweep(campaigns.dropFirst()) }
            }
        }
    }

    /// Shutdown: stops the sweep and every job (their exports are followed by the next job).
    func close() {
        loop.assertInLoop()
        closed = true
        sweepTimer?.cancel()
        sweepTimer = nil
        let running = jobs.values
        jobs = [:]
        for job in running { job.cancel() }
    }
}
