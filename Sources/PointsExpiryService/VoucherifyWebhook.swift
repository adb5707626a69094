import EventLoop
import ExpiryCore
import HTTP2Server
import Logging
import RedisCache
import WebhookSigning

/// `POST /webhooks/voucherify`: verifies the signature over the body as received, then drops the
/// member named by a `points_expired` event (the same `MemberCache.invalidate` as InvalidateMember). The relay sees 200 only
/// once the invalidation happened; 503 asks it to retry; 4xx means the delivery can never succeed.
final class VoucherifyWebhook {
    static let path = "/webhooks/voucherify"

    private let loop: Loop
    private let signer: WebhookSigner?
    private let cache: MemberCache
    private let bodyLimit: Int
    private let answerWithinMilliseconds: Int
    private let metrics: Metrics
    private let logger: Logger

    /// `signer` nil: no `WEBHOOK_SECRET`, the endpoint is off. `answerWithinMilliseconds` bounds
    /// the wait for Redis (Voucherify gives up after 10 s; we promise far less).
    init(loop: Loop, signer: WebhookSigner?, cache: MemberCache, bodyLimit: Int, answerWithinMilliseconds: Int,
         metrics: Metrics, logger: Logger) {
        self.loop = loop
        self.signer = signer
        self.cache = cache
        self.bodyLimit = bodyLimit
        self.answerWithinMilliseconds = answerWithinMilliseconds
        self.metrics = metrics
        self.logger = logger
    }

    var route: PlainRoute {
        PlainRoute(method: "POST", bodyLimit: bodyLimit, limitExceeded: { [self] violation in
            switch violation {
            case .bodyTooLarge(let limit): return rejection(.tooLarge(limit: limit))
            case .headerListTooLarge:
                metrics.webhookEvents.increment("too_large")
                return HTTPResponse(status: 431, headers: [("content-type", "application/json")],
                                    body: ConnectError(.resourceExhausted, "request headers are too large").jsonBody())
            }
        }, handle: { [self] request, respond in handle(request, respond: respond) })
    }

    func handle(_ request: HTTPRequest, respond: @escaping (HTTPResponse) -> Void) {
        let event: PointsExpiredEvent
        do {
            switch try verifiedEvent(request) {
            case .other(let type):
                logger.debug("webhook event ignored", metadata: ["type": "\(type)"])
                metrics.webhookEvents.increment("ignored")
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
        guard signer.isValid(signature: signature, body: body) else {
            logger.warning("webhook delivery with a wrong signature refused")
            throw .badSignature
        }
        let payload: JSONValue
        do {
            payload = try JSONParser.parse(body)
        } catch {
            throw .malformed("the webhook body is not valid JSON: \(error)")
        }
        return try WebhookEvent(payload: payload)
    }

    private func invalidate(_ event: PointsExpiredEvent, respond: @escaping (HTTPResponse) -> Void) {
        // Whichever comes first answers: the invalidation or the deadline; the other is dropped.
        var answered = false
        var deadline: Timer?
        do {
            deadline = try Timer.schedule(on: loop, after: answerWithinMilliseconds) { [self] in
                guard !answered else { return }
                answered = true
                respond(rejection(.cacheUnavailable("Redis did not confirm the invalidation within \(answerWithinMilliseconds) ms")))
            }
        } catch {
            // Redis' own command timeout still bounds the wait.
            logger.error("could not arm the webhook deadline timer", metadata: ["error": "\(error)"])
        }
        cache.invalidate(member: event.member, eventID: event.eventID) { [self] result in
            deadline?.cancel()
            guard !answered else { return }
            answered = true
            switch result {
            case .success(.alreadyHandled):
                metrics.webhookEvents.increment("duplicate")
                respond(Self.acknowledgement(#"{"status":"invalidated","duplicate":true}"#))
            case .success:
                metrics.webhookEvents.increment("invalidated")
                respond(Self.acknowledgement(#"{"status":"invalidated"}"#))
            case .failure(let error):
                respond(rejection(.cacheUnavailable(error.description)))
            }
        }
    }

    private func rejection(_ rejection: WebhookRejection) -> HTTPResponse {
        metrics.webhookEvents.increment(rejection.metricLabel)
        return HTTPResponse(status: rejection.httpStatus, headers: [("content-type", "application/json")], body: rejection.error.jsonBody())
    }

    private static func acknowledgement(_ json: String) -> HTTPResponse {
        HTTPResponse(status: 200, headers: [("content-type", "application/json")], body: Array(json.utf8))
    }
}
