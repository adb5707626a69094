/// Everything the handlers share. Lives on the event-loop thread only.
final class FakeState {
    let store: CampaignStore
    let stats = CallStats()
    let failures = FailureInjector()
    let rateLimit: RateLimitWindow
    let appId: String
    let appToken: String
    /// Added to every API answer (`--latency-ms`, `POST /_fake/latency`).
    var defaultLatencyMs: Int

    init(store: CampaignStore, rateLimit: RateLimitWindow, appId: String, appToken: String, latencyMs: Int) {
        self.store = store
        self.rateLimit = rateLimit
        self.appId = appId
        self.appToken = appToken
        self.defaultLatencyMs = latencyMs
    }
}
