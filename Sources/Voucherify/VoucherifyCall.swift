import EventLoop
import ExpiryDomain
import HTTPClient
import Logging

/// One call to Voucherify through its attempts (a retry is another attempt of the same call):
/// what it sends, how it reads an answer, what it waits for right now (an admission, a transfer
/// or a backoff timer) and the circuit permit of its current attempt. `VoucherifyAPI.perform`
/// drives it; it ends once, by `finish` or `abandon`. Loop-confined.
final class VoucherifyCall<Value> {
    let request: HTTPClientRequest
    let admission: any UpstreamAdmission
    /// Whether a failure that may pass is tried again: safe GETs only.
    let retries: Bool
    /// Names the call in log lines (bounded values only).
    let logMetadata: Logger.Metadata
    /// Takes a 2xx body as it arrives (a download); nil: the body is collected for `interpret`.
    let receiveBody: ((UnsafeRawBufferPointer) -> Bool)?
    /// What an answer means for this call.
    let interpret: (HTTPClientResponse, Timestamp) -> CallAnswer<Value>
    /// HTTP calls sent so far.
    var attempts = 0
    var permit: CircuitBreaker.Permit?
    var transfer: HTTPTransfer?
    var retryTimer: Timer?
    /// Whose permit the call's attempts take, and who learns how they went.
    let circuitBreaker: CircuitBreaker
    private var completion: ((Result<Value, VoucherifyError>) -> Void)?

    init(request: HTTPClientRequest, admission: any UpstreamAdmission, circuitBreaker: CircuitBreaker, retries: Bool,
         logMetadata: Logger.Metadata, receiveBody: ((UnsafeRawBufferPointer) -> Bool)? = nil,
         interpret: @escaping (HTTPClientResponse, Timestamp) -> CallAnswer<Value>,
         completion: @escaping (Result<Value, VoucherifyError>) -> Void) {
        self.request = request
        self.admission = admission
        self.circuitBreaker = circuitBreaker
        self.retries = retries
        self.logMetadata = logMetadata
        self.receiveBody = receiveBody
        self.interpret = interpret
        self.completion = completion
    }

    /// Monotonic ms by which the caller needs the call over (admission waits, queueing,
    /// retries and each attempt's timeout included).
    var deadline: Int64 { request.deadline ?? .max }

    var isFinished: Bool { completion == nil }

    /// The attempt holding `permit` ended; the circuit learns how it went.
    func settle(_ health: CircuitBreaker.CallHealth, now: Int64) {
        guard let permit else { return }
        self.permit = nil
        circuitBreaker.record(health, for: permit, now: now)
    }

    /// Ends the call with `result`, calling its completion at once. A permit still held (the
    /// admission refused) goes back unjudged.
    func finish(_ result: Result<Value, VoucherifyError>, now: Int64) {
        guard let completion else { return }
        self.completion = nil
        settle(.inconclusive, now: now)
        completion(result)
    }

    /// Stops whatever the call waits for; its completion never runs. A probe it holds goes back
    /// unjudged, so the next call can probe instead of waiting out the lease.
    func abandon(now: Int64) {
        completion = nil
        transfer?.cancel()
        transfer = nil
        retryTimer?.cancel()
        retryTimer = nil
        settle(.inconclusive, now: now)
    }
}

/// One attempt's result in the call's terms, with its classification.
struct CallAnswer<Value> {
    var kind: UpstreamCallKind
    var result: Result<Value, VoucherifyError>
    /// Voucherify's explanation of a failed call, for the log only.
    var upstreamMessage: String?

    init(kind: UpstreamCallKind, result: Result<Value, VoucherifyError>) {
        self.kind = kind
        self.result = result
    }

    init(_ error: HTTPClientError) {
        kind = UpstreamCallKind(error)
        result = .failure(kind == .malformed ? .malformed(error.description) : .unavailable(error.description))
    }

    /// A 200 read by `parse`; any other status classified as every Voucherify refusal is
    /// (`VoucherifyFailure.classify`: a 404 means what the member read takes it to mean).
    init(_ response: HTTPClientResponse, now: Timestamp, parse: ([UInt8]) throws(VoucherifyError) -> Value) {
        kind = UpstreamCallKind(status: response.status)
        guard kind == .ok else {
            upstreamMessage = VoucherifyFailure.upstreamMessage(response.body)
            let retryAfter = kind == .rateLimited ? RateLimitHeaders.retryAfterSeconds(headers: response.headers, now: now) : nil
            result = .failure(VoucherifyFailure.classify(status: response.status, body: response.body, retryAfterSeconds: retryAfter))
            return
        }
        do {
            result = .success(try parse(response.body))
        } catch {
            kind = .malformed
            result = .failure(error)
        }
    }

    /// What a 404 means for this call, in place of the member read's reading.
    mutating func notFound(means error: VoucherifyError) {
        if kind == .notFound { result = .failure(error) }
    }
}
