import ArgumentParser
import EventLoop
import ExpiryDomain
import Foundation
import HTTPClient

@main
struct FakeVoucherify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fake-voucherify",
        abstract: "Impersonates Voucherify's member points-expiration API and its export (HTTP/1.1) for development and tests.",
        discussion: """
            API (headers X-App-Id and X-App-Token):
              GET /v1/loyalties/{campaign id or name}/members/{card code}/points-expiration
                  ?limit=1..100&page=1..100
              POST /v1/loyalties/{campaign id or name}/points-expiration/export
                  {"parameters":{"order":"expires_at"|"-expires_at"?,"fields":[id,
                  campaign_id,voucher_id,points,status,expires_at]?,"filters":…?}}
                  (filters accepted, ignored): an export of the campaign's members
                  as they are now, answered SCHEDULED
              GET /v1/exports/{id}   SCHEDULED for the first half of
                  --export-delay-ms, IN_PROGRESS, then DONE with result.url (a fresh
                  download token, valid --export-token-ttl-ms, on every GET; at the
                  host the request came to) or ERROR with result.message
              GET /v1/exports/{id}/download?token=…   the CSV (auth headers too):
                  BOM, CRLF, labels Id,Campaign ID,Voucher ID,Points,Status,
                  Expires At; one row per ACTIVE and EXPIRED bucket; streamed
            Every API answer (exports too) carries X-Rate-Limit-Limit, -Remaining,
            -Retry (epoch second the window ends) and -Type. A window opens with the
            first call and lasts --rate-limit-window seconds; with
            --enforce-rate-limit, calls past --rate-limit get 429 with Retry-After
            until it ends. /_fake/fail and holds concern member reads only.
            Control (no auth; JSON bodies, omitted fields optional):
              GET /_fake/stats    calls (member reads), by_member, by_page, failed
                  (injected failures), rate_limited (429s over the limit),
                  max_in_window (most calls a window counted), max_concurrent,
                  by_member_max_concurrent
                  ("campaign|member": most calls in progress at once), paths (the
                  last 1000 request paths outside /_fake/, exactly as sent), exports
                  {created, by_campaign, polls, downloads, rejected_downloads}
              POST /_fake/stats/reset
              GET|POST /_fake/fail  {"mode":"status"|"rate_limit"|"malformed"|"slow"|
                  "drop"|"none","count":N?,…}: the next N calls (default: all) fail
              PUT|DELETE /_fake/members    GET|POST /_fake/latency
              GET|POST /_fake/rate-limit  {"limit":N?,"window_seconds":S?,
                  "enforce":true|false?}: a change starts a fresh window
              GET|POST /_fake/hold  {"member":…?,"campaign":…?,"hold_ms":30000?}:
                  matching API calls get no answer until released, or hold_ms after
                  they arrived (at most 600000; at most 1000 rules). GET shows
                  {"rules":[…],"held":N}. Injected failures and 429s are not held.
              POST /_fake/release  {"member":…?,"campaign":…?}: answers the matching
                  held calls with the data as it is now and lifts the rules naming
                  those fields ({} releases everything)
              POST /_fake/expire  runs Voucherify's nightly expiry job for one card:
                  {"campaign":…,"member":…,"as_of":"YYYY-MM-DD"?,"webhook_url":…?,
                   "secret":…?,"shape":"envelope"|"data"?,"pretty":false?,
                   "deliver":true?}
                  Buckets whose expires_at is before as_of (default today, UTC)
                  become EXPIRED (only exports show them). If any did, the
                  points_expired webhook, signed (x-voucherify-signature)
                  when a secret is known, is POSTed to
                  webhook_url or --webhook-url: h2c (prior knowledge) for
                  http://, ALPN for https://, 10 s timeout. The answer comes
                  after the delivery: payload, signature, receiver's reply.
              GET|POST /_fake/exports  {"delay_ms":N?,"token_ttl_ms":N?,
                  "fail_next":N?}: settings for exports created from now on
                  (fail_next: that many end in ERROR); GET adds exports and rows
                  kept (at most 1000 exports and 10000000 rows, oldest dropped)
            Once bound it prints: fake-voucherify listening on http://HOST:PORT
            """)

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 = any free port).")
    var port = 8090

    @Option(help: "Expected X-App-Id header.")
    var appId = "fake-app-id"

    @Option(help: "Expected X-App-Token header.")
    var appToken = "fake-app-token"

    @Option(help: "JSON data file ({\"campaigns\":[…]}); replaces generated data.")
    var data: String?

    @Option(help: "Generated members (MEMBER-000001…).")
    var members = 100

    @Option(help: "Generated buckets per member, as A..B (or a single number).")
    var bucketsPerMember = "1..5"

    @Option(help: "Generated EXPIRED buckets per member (dates in the past year, only exports show them), as A..B.")
    var expiredBucketsPerMember = "0..2"

    @Option(help: "Seed of the generated data (same seed, same day → same data).")
    var seed: UInt64 = 1

    @Option(help: "Id of the generated campaign.")
    var campaignId = "camp_fake_loyalty"

    @Option(help: "Name of the generated campaign (also accepted in the path).")
    var campaignName = "Fake Loyalty"

    @Flag(help: "Also serve the campaign and cards of proto-json/examples (camp_Fk3vWgzXK2yCmZ1aQmLp7TnR, LC-7F3K-92QD, …), as the examples show them.")
    var contractExamples = false

    @Option(help: "Milliseconds added to every API answer (timer based, never blocks).")
    var latencyMs = 0

    @Option(help: "Requests per window, advertised in X-Rate-Limit-Limit.")
    var rateLimit = 2000

    @Option(help: ArgumentHelp("Length of a rate-limit window in seconds (1…86400).", valueName: "seconds"))
    var rateLimitWindow = 60

    @Flag(help: "Answer 429 once more than --rate-limit calls arrive in the current window.")
    var enforceRateLimit = false

    @Option(help: "Milliseconds from creating an export until it is DONE (0…3600000).")
    var exportDelayMs = 2000

    @Option(help: "Milliseconds an export's download token stays valid (1…86400000).")
    var exportTokenTtlMs = 300_000

    @Option(help: "Where POST /_fake/expire delivers the points_expired webhook (http:// = h2c, https://).")
    var webhookUrl: String?

    @Option(help: "Secret that signs delivered webhooks (x-voucherify-signature); default: $WEBHOOK_SECRET (kept off the command line, where ps shows it); unsigned without either.")
    var webhookSecret: String?

    func run() throws {
        // Before any thread exists: curl's global set-up is not thread-safe.
        do {
            try Curl.globalInit()
        } catch {
            fail("\(error)")
        }
        let campaigns: [LoyaltyCampaign]
        do {
            campaigns = try loadCampaigns()
        } catch {
            fail("\(error)")
        }
        guard latencyMs >= 0 else { fail("--latency-ms must be ≥ 0") }
        let rateLimitSettings = RateLimitWindow.Settings(limit: rateLimit, windowSeconds: rateLimitWindow, enforce: enforceRateLimit)
        if let problem = rateLimitSettings.problem(limitName: "--rate-limit", windowName: "--rate-limit-window") { fail(problem) }
        let exportSettings = ExportStore.Settings(delayMs: exportDelayMs, tokenTTLMs: exportTokenTtlMs, failNext: 0)
        if let problem = exportSettings.problem(delayName: "--export-delay-ms", ttlName: "--export-token-ttl-ms") { fail(problem) }
        if let webhookUrl, WebhookDelivery.httpVersion(for: webhookUrl) == nil {
            fail("--webhook-url must start with http:// or https://, got \"\(webhookUrl)\"")
        }

        // Everything runs on this thread's loop: the server, its timers and the webhook deliveries.
        let loop: Loop
        do {
            loop = try Loop()
        } catch {
            fail("cannot set up the event loop: \(error)")
        }
        let state = FakeState(store: CampaignStore(campaigns: campaigns),
                              rateLimit: RateLimitWindow(rateLimitSettings), holds: ReadHolds(loop: loop),
                              exports: ExportStore(exportSettings), appId: appId, appToken: appToken, latencyMs: latencyMs,
                              webhookURL: webhookUrl.flatMap { $0.isEmpty ? nil : $0 },
                              webhookSecret: (webhookSecret ?? ProcessInfo.processInfo.environment["WEBHOOK_SECRET"]).flatMap { $0.isEmpty ? nil : $0 },
                              webhooks: WebhookDelivery(loop: loop))
        let router = Router(state: state)
        let server = EventServer(loop: loop, handler: router.route)
        let boundPort: Int
        do {
            boundPort = try server.start(host: host, port: port)
        } catch {
            server.teardown()
            fail("\(error)")
        }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        state.listeningURL = "http://\(shownHost):\(boundPort)"
        // Unbuffered: whoever started us waits for this line before calling.
        try? FileHandle.standardOutput.write(contentsOf: Data("fake-voucherify listening on \(state.listeningURL)\n".utf8))

        loop.run()
        server.teardown()
    }

    private func loadCampaigns() throws -> [LoyaltyCampaign] {
        let served = try loadSeedCampaigns()
        guard contractExamples else { return served }
        guard !served.contains(where: { $0.id == ContractExamples.campaignId || $0.name == ContractExamples.campaignName }) else {
            throw InputError(description: "--contract-examples: campaign \(ContractExamples.campaignId) is already in the data")
        }
        return served + [ContractExamples.campaign()]
    }

    /// The generated campaign, or the `--data` file's campaigns instead.
    private func loadSeedCampaigns() throws -> [LoyaltyCampaign] {
        if let data {
            return try DataFile.load(path: data, now: Timestamp.now().millisecondsSince1970 / 1000)
        }
        guard members >= 0, members <= 10_000_000 else { throw InputError(description: "--members must be 0…10000000") }
        guard let range = parseRange(bucketsPerMember) else {
            throw InputError(description: "--buckets-per-member must look like A..B with 0 ≤ A ≤ B ≤ 100000, got \"\(bucketsPerMember)\"")
        }
        guard let expiredRange = parseRange(expiredBucketsPerMember) else {
            throw InputError(description: "--expired-buckets-per-member must look like A..B with 0 ≤ A ≤ B ≤ 100000, got \"\(expiredBucketsPerMember)\"")
        }
        let generator = DataGenerator(members: members, bucketsPerMember: range, expiredBucketsPerMember: expiredRange, seed: seed,
                                      campaignId: campaignId, campaignName: campaignName, today: Timestamp.now().millisecondsSince1970 / 86_400_000)
        return [generator.generate()]
    }

    private func parseRange(_ text: String) -> ClosedRange<Int>? {
        let parts = text.components(separatedBy: "..")
        let bounds = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard bounds.count == parts.count, (1...2).contains(bounds.count),
              let low = bounds.first, let high = bounds.last, low >= 0, low <= high, high <= 100_000 else { return nil }
        return low...high
    }

    private func fail(_ message: String) -> Never {
        logError(message)
        Foundation.exit(1)
    }
}

/// One line on stderr with the program's prefix, unbuffered (a failed write has nowhere to be reported).
func logError(_ message: String) {
    try? FileHandle.standardError.write(contentsOf: Data("fake-voucherify: \(message)\n".utf8))
}
