import EventLoop
import HTTPClient

/// One webhook POST: where, what, and the signature header (nil: sent unsigned).
struct WebhookRequest {
    let url: String
    let body: [UInt8]
    let signature: String?
}

/// How a delivery ended: the receiver's answer, or the reason there was none.
enum WebhookOutcome {
    case answered(status: Int, httpVersion: String, body: String)
    case failed(String)
}

/// Delivers webhooks with the project's HTTP client on the fake's own loop: a delivery never
/// blocks it, so the API keeps answering (slow answers included) while a receiver takes up to the
/// 10 s Voucherify allows. Loop-confined.
final class WebhookDelivery {
    /// Voucherify counts no answer within 10 s as a failed delivery.
    static let timeoutMs = 10_000
    /// The receiver's answer is only shown to a person; more than this is cut off.
    static let maxShownResponseBytes = 64 * 1024

    private let loop: Loop
    /// The multi handle of each delivery in flight, by its identity: one each, so every delivery
    /// gets a fresh connection. A shared pool would keep the connection to a receiver that
    /// accepted but never answered its HTTP/2 preface after the delivery timed out, and later
    /// deliveries there would fail at once instead of waiting their 10 s.
    private var inFlight: [ObjectIdentifier: CurlMulti] = [:]

    init(loop: Loop) {
        self.loop = loop
    }

    /// h2c with prior knowledge for http:// (the points-expiry service speaks only HTTP/2), HTTP/2
    /// through ALPN (or HTTP/1.1 if refused) for https://; nil for any other scheme.
    static func httpVersion(for url: String) -> HTTPClientRequest.Version? {
        let lowered = url.lowercased()
        if lowered.hasPrefix("http://") { return .http2PriorKnowledge }
        if lowered.hasPrefix("https://") { return .http2OverTLS }
        return nil
    }

    /// `completion` runs exactly once, on the loop: later when the POST is under way, at once
    /// when it cannot be started.
    func start(_ request: WebhookRequest, completion: @escaping (WebhookOutcome) -> Void) {
        guard let version = WebhookDelivery.httpVersion(for: request.url) else {
            completion(.failed("the webhook URL must start with http:// or https://"))
            return
        }
        var headers = [(name: "content-type", value: "application/json")]
        if let signature = request.signature { headers.append((name: "x-voucherify-signature", value: signature)) }
        let post = HTTPClientRequest(method: "POST", url: request.url, headers: headers, body: request.body, version: version,
                                     connectTimeoutMilliseconds: WebhookDelivery.timeoutMs,
                                     totalTimeoutMilliseconds: WebhookDelivery.timeoutMs)
        do {
            let client = try CurlMulti(loop: loop)
            let key = ObjectIdentifier(client)
            // The client keeps the transfer until it completes; nothing here cancels one.
            _ = try client.start(post) { [unowned self] result in
                // This runs inside the client's own callback: it is freed on the next tick.
                loop.nextTick { self.inFlight[key] = nil }
                completion(WebhookDelivery.outcome(result))
            }
            inFlight[key] = client
        } catch {
            completion(.failed("\(error)"))
        }
    }

    private static func outcome(_ result: Result<HTTPClientResponse, HTTPClientError>) -> WebhookOutcome {
        switch result {
        case .success(let response):
            // The client tells only HTTP/2 from HTTP/1.x; a receiver speaking 1.x speaks 1.1 in practice.
            return .answered(status: response.status, httpVersion: response.httpVersion == 2 ? "2" : "1.1",
                             body: String(decoding: response.body.prefix(maxShownResponseBytes), as: UTF8.self))
        case .failure(let error):
            return .failed(error.description)
        }
    }
}
