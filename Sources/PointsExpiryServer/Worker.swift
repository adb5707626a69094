import EventLoop
import HTTPClient
import HTTPServer
import Logging
import RPC
import RedisClient
import Voucherify

/// Where a worker is in its life; read by the handlers that must behave differently on the way out.
final class WorkerLifecycle {
    /// GOAWAY sent: finishing in-flight requests, not ready for new ones.
    var draining = false
    /// Closing: start no new upstream work.
    var stopped = false
}

/// Everything one loop owns: its listener and connections, its Redis connection and its curl
/// multi handle. Created, used and torn down on the loop's thread only.
final class Worker {
    let loop: Loop
    private let redis: RedisConnection
    private let curl: CurlMulti
    private var budget: RateBudget?
    private var server: HTTPServer?
    private var router: RPCRouter?
    private var warmMembers: WarmMembers?
    private var campaignExports: CampaignExports?
    private let tierTracking: TierTracking?
    private let lifecycle = WorkerLifecycle()

    var port: Int { server?.port ?? 0 }

    /// Redis answered this worker's handshake and the worker is not draining.
    var isReady: Bool { redis.isReady && !lifecycle.draining }

    /// `index` names this worker in per-worker metrics.
    init(index: Int, loop: Loop, configuration: ServiceConfiguration, listening: ListeningSocket, voucherifyShared: VoucherifyShared,
         localBudget: LocalRateBudget, exportDownloads: ExportDownloadSlots, localTiers: LocalTierDirectory, metrics: Metrics,
         logger: Logger) throws {
        self.loop = loop
        redis = try RedisConnection(loop: loop, configuration: configuration.redis, logger: logger)
        redis.observer = RedisConnectionObserver(
            commandFinished: { outcome, seconds in metrics.redisCommandFinished(outcome, seconds: seconds) },
            readinessChanged: { ready in metrics.setRedisConnected(worker: index, ready) })
        curl = try CurlMulti(loop: loop)
        let cache = MemberCache(redis: redis, logger: logger)
        let tier = LocalTier(maxBytes: configuration.localCacheBytes / max(1, configuration.workers)) {
            metrics.localCache.evictions.increment()
        }
        if tier.maxBytes > 0 {
            localTiers.register(tier, loop: loop)
            tierTracking = try TierTracking(loop: loop, redis: configuration.redis, tier: tier, worker: index, metrics: metrics, logger: logger)
        } else {
            tierTracking = nil
        }
        let voucherify = VoucherifyAPI(curl: curl, configuration: configuration.voucherify, shared: voucherifyShared, logger: logger)
        let budget = try RateBudget(loop: loop, redis: redis, local: localBudget, metrics: metrics, logger: logger)
        self.budget = budget
        let answers = MemberAnswers(loop: loop, cache: cache, tier: tier, tiers: localTiers, voucherify: voucherify, budget: budget.interactive, warmingBudget: budget.warming,
                                    policy: MemberAnswerPolicy(schedule: configuration.schedule, windows: configuration.cacheWindows),
                                    lifecycle: lifecycle, metrics: metrics, logger: logger)
        let webhook = VoucherifyWebhook(signer: configuration.webhookSecret.map(WebhookSigner.init(secret:)), answers: answers,
                                        bodyLimit: configuration.maxWebhookBodyBytes, metrics: metrics, logger: logger)
        let readiness = Readiness(redis: redis, lifecycle: lifecycle)
        let binary = BinaryAnswers(tier: tier)
        let warmMembers = WarmMembers(loop: loop, answers: answers, metrics: metrics, logger: logger)
        self.warmMembers = warmMembers
        let campaignExports = CampaignExports(loop: loop, store: CampaignExportStore(redis: redis, logger: logger),
                                              downloadSlots: exportDownloads, voucherify: voucherify,
                                              admission: budget.warming, timing: ExportTiming(refreshSeconds: configuration.exportRefreshSeconds),
                                              schedule: configuration.schedule, notFoundSeconds: configuration.cacheWindows.notFoundSeconds,
                                              metrics: metrics, logger: logger)
        self.campaignExports = campaignExports
        let router = RPCRouter(
            loop: loop,
            methods: [GetMemberExpiration(answers: answers, binary: binary),
                      BatchGetMemberExpirations(loop: loop, answers: answers, binary: binary, logger: logger),
                      InvalidateMember(answers: answers), warmMembers,
                      GetCampaignExpiration(exports: campaignExports, schedule: configuration.schedule),
                      HealthCheck(readiness: readiness), HealthWatch()],
            plainRoutes: [
                "/healthz": .get { HTTPResponse(status: 200, headers: [("content-type", "text/plain")], body: Array("ok\n".utf8)) },
                "/readyz": readiness.route,
                "/metrics": .get { HTTPResponse(status: 200, headers: [("content-type", "text/plain; version=0.0.4")], body: Array(metrics.render().utf8)) },
                VoucherifyWebhook.path: webhook.route,
            ],
            maxBodyBytes: configuration.maxRequestBodyBytes, metrics: metrics, logger: logger)
        self.router = router
        server = try HTTPServer(loop: loop, listeningOn: listening, configuration: configuration.server, handler: router, logger: logger)
        redis.start()
        tierTracking?.start()
        // One sweep per replica keeps the campaigns asked for lately refreshed.
        if index == 0 { campaignExports.startSweeping() }
    }

    /// Stops accepting, sends GOAWAY, and calls `done` once in-flight requests finished.
    func drain(done: @escaping () -> Void) {
        lifecycle.draining = true
        // A warm may run for minutes: answer it now with what it has, the rest deferred.
        warmMembers?.finishAll()
        guard let server else { return done() }
        server.drain(onDrained: done)
    }

    /// Last step of shutdown, on the loop: close what is left and stop all upstream work, so
    /// nothing is in flight when the loop stops. (Pending Redis lookups fail now; with
    /// `stopped` set they end without starting a Voucherify call.)
    func close() {
        lifecycle.stopped = true
        server?.closeAll()
        server = nil
        router = nil
        warmMembers?.finishAll()
        warmMembers = nil
        campaignExports?.close()
        campaignExports = nil
        budget?.close()
        curl.cancelAll()
        tierTracking?.close()
        redis.close()
    }
}
