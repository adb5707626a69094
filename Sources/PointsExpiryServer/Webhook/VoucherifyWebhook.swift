import Codecs
import HTTPServer
import Logging
import RPC
import Voucherify

/// `POST /webhooks/voucherify`: verifies the signature over the body as received, then drops the
/// member named by a `points_expired` event (the same `MemberAnswers.invalidate` as InvalidateMember: Redis,
/// then every worker's tier). The relay sees 200 only once the invalidation happened; 503 asks it to retry; 4xx means the delivery can never succeed.
/// Each delivery is counted and logged once, at `info`, by its result (never its signature).
final class VoucherifyWebhook {
    static let path = "/webhooks/voucherify"

    private let signer: WebhookSigner?
    private let answers: MemberAnswers
    private let bodyLimit: Int
    private let metrics: Metrics
    private let logger: Logger

    /// `signer` nil: no `WEBHOOK_SECRET`, the endpoint is off.
    init(signer: WebhookSigner?, answers: MemberAnswers, bodyLimit: Int, metrics: Metrics, logger: Logger) {
        self.signer = signer
        self.answers = answers
        self.bodyLimit = bodyLimit
        self.metrics = metrics
        self.logger = logger
    }

    var route: PlainRoute {
        PlainRoute(method: "POST", bodyLimit: bodyLimit, limitExceeded: { [self] violation in
            switch violation {
            case .bodyTooLarge(let limit): return rejection(.tooLarge(limit: limit))
            case .headerListTooLarge:
                delivered("too_large", reason: "request headers are too large")
                return HTTPResponse(status: 431, headers: [("content-type", "application/json")],
                                    body: RPCError(.resourceExhausted, "request headers are too large").jsonBody())
            case .serverBusy:
                // 503 makes the relay retry: nothing of this delivery was taken.
                delivered("server_busy", reason: "the server is holding as many request bytes as it may")
                return HTTPResponse(status: 503, headers: [("content-type", "application/json"), ("retry-after", "1")],
                                    body: RPCError(.unavailable, "the server is holding as many request bytes as it may; retry shortly").jsonBody())
            case .requestTimeout(let seconds):
                delivered("request_timeout", reason: "the request did not arrive whole within \(seconds) s")
                return HTTPResponse(status: 408, headers: [("content-type", "application/json")],
                                    body: RPCError(.deadlineExceeded, "the request did not arrive whole within \(seconds) s").jsonBody())
            }
        }, handle: { [self] request, respond in handle(request, respond: respond) })
    }

    func handle(_ request: HTTPRequest, respond: @escaping (HTTPResponse) -> Void) {
        let event: PointsExpiredEvent
        do {
            switch try verifiedEvent(request) {
            case .other(let type):
                delivered("ignored", type: type)
                return respond(Self.acknowledgement(#"{"status":"ignored"}"#))
            case .pointsExpired(let pointsExpired):
                event = pointsExpired
            }
        } catch {
            return respond(rejection(error))
        }
        invalidate(event, respond: respond)
    }

    private func verifiedEvent(_ request: HTTPRequest) throws(WebhookRejection) -> WebhookEvent {
        guard let signer else {
            logger.error("webhook delivery refused: WEBHOOK_SECRET is not set, so signatures cannot be checked")
            throw .notConfigured
        }
        guard let signature = request.header("x-voucherify-signature") else { throw .missingSignature }
        // Relays forward the body byte for byte; a re-encoded one could not match the signature.
        if let encoding = request.header("content-encoding"), !encoding.isEmpty, encoding.lowercased() != "identity" {
            throw .unsupportedEncoding(encoding)
        }
        let body = request.body
        guard signer.isValid(signature: signature, body: body) else { throw .badSignature }
        let payload: JSONValue
        do {
            payload = try JSONParser.parse(body)
        } catch {
            throw .malformed("the webhook body is not valid JSON: \(error)")
        }
        do {
            return try WebhookEvent(payload: payload)
        } catch {
            throw .malformed(error.reason)
        }
    }

    /// Answers once Redis confirmed the invalidation, or with 503 when it could not. The Redis
    /// client's command timeout bounds the wait (500 ms, checked every quarter of it: at most
    /// about 625 ms, far inside the 10 s Voucherify allows).
    private func invalidate(_ event: PointsExpiredEvent, respond: @escaping (HTTPResponse) -> Void) {
        answers.invalidate(member: event.member, eventID: event.eventID) { [self] result in
            switch result {
            case .success(.alreadyHandled):
                delivered("duplicate", type: WebhookEvent.pointsExpiredType, event: event)
                respond(Self.acknowledgement(#"{"status":"invalidated","duplicate":true}"#))
            case .success:
                delivered("invalidated", type: WebhookEvent.pointsExpiredType, event: event)
                respond(Self.acknowledgement(#"{"status":"invalidated"}"#))
            case .failure(let error):
                respond(rejection(.cacheUnavailable(error.description), event: event))
            }
        }
    }

    private func rejection(_ rejection: WebhookRejection, event: PointsExpiredEvent? = nil) -> HTTPResponse {
        delivered(rejection.metricLabel, type: event.map { _ in WebhookEvent.pointsExpiredType }, event: event, reason: rejection.error.message)
        return HTTPResponse(status: rejection.httpStatus, headers: [("content-type", "application/json")], body: rejection.error.jsonBody())
    }

    /// Counts a delivery by `result` and logs it: the event's type (bounded: a caller's text),
    /// member and id when known, and why it was refused.
    private func delivered(_ result: String, type: String? = nil, event: PointsExpiredEvent? = nil, reason: String? = nil) {
        metrics.webhookEvents.increment(result)
        var fields: Logger.Metadata = ["result": .string(result)]
        if let type { fields["type"] = .string(String(decoding: type.utf8.prefix(100), as: UTF8.self)) }
        if let event {
            fields["member"] = .string(event.member)
            if let eventID = event.eventID { fields["event_id"] = .string(eventID) }
        }
        if let reason { fields["reason"] = .string(reason) }
        logger.info("webhook event", metadata: fields)
    }

    private static func acknowledgement(_ json: String) -> HTTPResponse {
        HTTPResponse(status: 200, headers: [("content-type", "application/json")], body: Array(json.utf8))
    }
}
