import Codecs
import ExpiryDomain
import Voucherify

/// `POST /_fake/expire`: runs the expiry job for one card now and, when buckets expired, delivers
/// the signed points_expired webhook. The answer waits for the delivery to finish, so a test
/// knows the receiver has seen the event when the call returns.
struct ExpireAPI {
    let state: FakeState

    private struct Body: Decodable {
        let campaign: String
        let member: String
        /// Default: today (UTC).
        let as_of: String?
        /// Override `--webhook-url` / `--webhook-secret`; an empty string means none.
        let webhook_url: String?
        let secret: String?
        let shape: PointsExpiredWebhook.Shape?
        /// Indented body; the signature still covers the whitespace-free form, as Voucherify's does.
        let pretty: Bool?
        /// false: expire, build and sign the event, but send nothing.
        let deliver: Bool?
    }

    func handle(_ request: IncomingRequest) -> Dispatch {
        do throws(ControlError) {
            return try expire(ControlReply.decode(Body.self, request))
        } catch {
            return .now(error.response)
        }
    }

    private func expire(_ body: Body) throws(ControlError) -> Dispatch {
        // Everything is checked before the card changes.
        guard !body.campaign.isEmpty, !body.member.isEmpty else { throw .badRequest("campaign and member must not be empty") }
        let asOf = try asOfDate(body.as_of)
        let url = nonEmpty(body.webhook_url ?? state.webhookURL)
        if let url, WebhookDelivery.httpVersion(for: url) == nil {
            throw .badRequest("webhook_url must start with http:// or https://, got \"\(url)\"")
        }
        let secret = nonEmpty(body.secret ?? state.webhookSecret)
        guard let campaign = state.store.campaign(matching: body.campaign) else { throw .notFound("no campaign \(body.campaign)") }
        guard var member = campaign.members[body.member] else { throw .notFound("no member \(body.member) in campaign \(campaign.id)") }

        let expired = PointsExpiryJob.expire(&member, asOf: asOf)
        var fields: [(key: String, value: JSONValue)] = [("as_of", .string(asOf.iso)), ("expired_buckets", .integer(expired.count))]
        guard !expired.isEmpty else { return .now(ControlReply.ok(fields + [("expired_points", .integer(0))])) }
        campaign.members[body.member] = member

        let webhook = PointsExpiredWebhook(ids: state.eventIds.next(), createdAt: .now(), campaign: campaign,
                                           member: member, expired: expired)
        let json = webhook.json(body.shape ?? .envelope)
        var compact = JSONWriter()
        compact.appendValue(json)
        // Voucherify signs the compact form whatever it sends; pretty differs only by whitespace.
        let signature = secret.map { WebhookSigner(secret: $0).signature(of: compact.bytes) }
        var payloadBytes = compact.bytes
        if body.pretty == true {
            var pretty = JSONWriter()
            pretty.appendPrettyValue(json)
            payloadBytes = pretty.bytes
        }
        let payload = String(decoding: payloadBytes, as: UTF8.self)
        fields += [("expired_points", .integer(webhook.expiredPoints)), ("event_id", .string(webhook.ids.event)),
                   ("transaction_id", .string(webhook.ids.transaction)),
                   ("payload", .string(payload)), ("signature", .string(signature ?? ""))]

        if body.deliver == false {
            return .now(ControlReply.ok(fields + [("webhook_skipped", .string("deliver is false"))]))
        }
        guard let url else {
            return .now(ControlReply.ok(fields + [("webhook_skipped", .string("no webhook URL: start with --webhook-url or give webhook_url"))]))
        }
        let delivery = WebhookRequest(url: url, body: payloadBytes, signature: signature)
        let answered = fields
        return Dispatch(action: .deferred { [webhooks = state.webhooks] reply in
            webhooks.start(delivery) { outcome in
                // The expiry happened whatever the receiver did, so the control call itself succeeds.
                reply(ControlReply.ok(answered + [("webhook", ExpireAPI.report(url: url, outcome))]))
            }
        }, delayMs: 0)
    }

    private func asOfDate(_ text: String?) throws(ControlError) -> CalendarDate {
        guard let text else { return CalendarDate(daysSince1970: Int(Timestamp.now().millisecondsSince1970 / 86_400_000)) }
        guard let date = CalendarDate(iso: text) else { throw .badRequest("as_of must be YYYY-MM-DD, got \"\(text)\"") }
        return date
    }

    private func nonEmpty(_ text: String?) -> String? {
        text?.isEmpty == false ? text : nil
    }

    private static func report(url: String, _ outcome: WebhookOutcome) -> JSONValue {
        switch outcome {
        case .answered(let status, let httpVersion, let body):
            return .object(["url": .string(url), "status": .integer(status), "http_version": .string(httpVersion),
                            "body": .string(body)])
        case .failed(let error):
            return .object(["url": .string(url), "error": .string(error)])
        }
    }
}
