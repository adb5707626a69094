/// Everything the handlers share. Lives on the event-loop thread only.
final class FakeState {
    let store: CampaignStore
    let stats = CallStats()
    let failures = FailureInjector()
    let rateLimit: RateLimitWindow
    let holds: ReadHolds
    let exports: ExportStore
    /// `http://host:port` as bound; set once the server listens, before the loop runs. Download
    /// URLs use it when a request has no usable Host header.
    var listeningURL = ""
    let appId: String
    let appToken: String
    /// Added to every API answer (`--latency-ms`, `POST /_fake/latency`).
    var defaultLatencyMs: Int
    /// Where `POST /_fake/expire` delivers and what it signs with, unless the request says otherwise.
    let webhookURL: String?
    let webhookSecret: String?
    let eventIds = EventIdSource()
    let webhooks: WebhookDelivery

    init(store: CampaignStore, rateLimit: RateLimitWindow, holds: ReadHolds, exports: ExportStore, appId: String, appToken: String,
         latencyMs: Int, webhookURL: String?, webhookSecret: String?, webhooks: WebhookDelivery) {
        self.store = store
        self.rateLimit = rateLimit
        self.holds = holds
        self.exports = exports
        self.appId = appId
        self.appToken = appToken
        self.defaultLatencyMs = latencyMs
        self.webhookURL = webhookURL
        self.webhookSecret = webhookSecret
        self.webhooks = webhooks
    }
}
