import Codecs
import EventLoop
import ExpiryDomain
import HTTPClient
import Logging

/// Voucherify's API on one loop's curl multi handle: the member points-expiration read (paged,
/// here) and the points-expiration export calls (PointsExpirationExport.swift). Every HTTP call
/// takes one path, `perform`: the process's circuit breaker, then the caller's admission, then
/// the HTTP client; each answer feeds the metrics, the circuit and the failure log, and a safe
/// GET that failed in a way that may pass is tried again within the caller's deadline.
/// Loop-confined.
public final class VoucherifyAPI {
    /// Voucherify's caps: `limit` ≤ 100 and `page` ≤ 100, so at most 10,000 buckets are reachable.
    public static let pageSize = 100
    public static let maxPages = 100

    private let curl: CurlMulti
    let configuration: VoucherifyConfiguration
    let shared: VoucherifyShared
    private let logger: Logger
    /// Sent on every call: the credentials and the attribution Voucherify's SDKs send too.
    private let identityHeaders: [(name: String, value: String)]
    /// Jitter for the retry backoff.
    private var random = SystemRandomNumberGenerator()
    /// The download host's own: its timeouts and 5xx say nothing of the API host, and must not
    /// open the circuit that member reads pass.
    let downloadCircuitBreaker = CircuitBreaker()
    var loop: Loop { curl.loop }

    public init(curl: CurlMulti, configuration: VoucherifyConfiguration, shared: VoucherifyShared, logger: Logger) {
        self.curl = curl
        self.configuration = configuration
        self.shared = shared
        self.logger = logger
        identityHeaders = [
            ("X-App-Id", configuration.appID),
            ("X-App-Token", configuration.appToken),
            ("User-Agent", "points-expiry/1"),
            ("X-Voucherify-Channel", "points-expiry"),
        ]
    }

    /// Every bucket of one member, in Voucherify's order. Page 1 first; once it gives `total`,
    /// the remaining pages are fetched concurrently. `deadline` (monotonic ms) bounds the whole
    /// read: time queued for a connection, admission waits, retries and each call's timeout.
    /// Before every HTTP call (each page, each retry) the circuit breaker and then `admission`
    /// must agree; `admission` hears the rate-limit headers of every answer. While the circuit
    /// is open the read fails at once, without asking `admission`. Completion runs once, on the
    /// loop, never from inside this call.
    public func fetchMemberBuckets(campaign: String, member: String, deadline: Int64, admission: UpstreamAdmission,
                                   completion: @escaping (Result<[PointsBucket], VoucherifyError>) -> Void) {
        loop.assertInLoop()
        let read = MemberRead(loop: loop, campaign: campaign, member: member, deadline: deadline, admission: admission,
                              completion: completion)
        fetch(page: 1, of: read)
    }

    private func fetch(page number: Int, of read: MemberRead) {
        let url = configuration.baseURL + UpstreamPath.pointsExpiration(campaign: read.campaign, member: read.member)
            + "?limit=\(Self.pageSize)&page=\(number)"
        let call = VoucherifyCall<PointsExpirationPage>(
            request: request(url: url, accept: "application/json", timeoutMilliseconds: configuration.requestTimeoutMilliseconds,
                             deadline: read.deadline),
            admission: read.admission, circuitBreaker: shared.circuitBreaker, retries: true, logMetadata: ["page": "\(number)"],
            interpret: { response, now in CallAnswer(response, now: now) { body throws(VoucherifyError) in try PointsExpirationPage(json: body) } }
        ) { [weak self] result in
            switch result {
            case .failure(let error): read.fail(error)
            case .success(let contents): self?.arrived(page: number, contents, of: read)
            }
        }
        read.track(page: number, call)
        perform(call)
    }

    private func arrived(page number: Int, _ contents: PointsExpirationPage, of read: MemberRead) {
        read.arrived(page: number, buckets: contents.buckets)
        if number == 1 {
            let pageCount = PointsExpirationPage.pageCount(total: contents.total, pageSize: Self.pageSize, maxPages: Self.maxPages)
            read.expectedPages = contents.buckets.isEmpty ? 1 : pageCount
            for next in stride(from: 2, through: read.expectedPages, by: 1) where !read.isFinished {
                fetch(page: next, of: read)
            }
        }
        read.finishIfComplete()
    }

    // MARK: the one call path

    /// A request with the service's credentials. Queued time counts against `deadline`, never
    /// against the call's own `timeoutMilliseconds`.
    func request(_ method: String = "GET", url: String, accept: String, body: [UInt8] = [], timeoutMilliseconds: Int,
                 deadline: Int64, maxResponseBytes: Int? = nil) -> HTTPClientRequest {
        var request = HTTPClientRequest(
            method: method, url: url, headers: identityHeaders + [("Accept", accept)] + (body.isEmpty ? [] : [("Content-Type", "application/json")]),
            body: body, version: configuration.httpVersion, connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds,
            totalTimeoutMilliseconds: timeoutMilliseconds, queueDeadline: deadline, deadline: deadline)
        if let maxResponseBytes { request.maxResponseBytes = maxResponseBytes }
        return request
    }

    /// Sends `call`'s next attempt: the circuit, then the admission, then the HTTP client. While
    /// the circuit is open the call fails at once, without asking the admission. The call's
    /// completion may run inside this method: callers that must not answer from inside their
    /// own call defer it.
    func perform<Value>(_ call: VoucherifyCall<Value>) {
        guard !call.isFinished else { return }
        let now = loop.monotonicMilliseconds
        switch call.circuitBreaker.acquire(now: now) {
        case .rejected(let rejection):
            call.finish(.failure(.unavailable(rejection.description)), now: now)
        case .granted(let permit):
            call.permit = permit
            call.admission.admit(deadline: call.deadline) { [weak self] admitted in
                // A call abandoned meanwhile has already handed the permit back.
                guard let self, !call.isFinished else { return }
                switch admitted {
                case .failure(let error): call.finish(.failure(error), now: loop.monotonicMilliseconds)
                case .success: send(call)
                }
            }
        }
    }

    private func send<Value>(_ call: VoucherifyCall<Value>) {
        call.attempts += 1
        let sentAt = loop.monotonicMilliseconds
        do {
            call.transfer = try curl.start(call.request, receiveBody: call.receiveBody) { [weak self] result in
                call.transfer = nil
                self?.answered(call, result, sentAt: sentAt)
            }
        } catch {
            let answer = CallAnswer<Value>(kind: .setupFailed, result: .failure(.unavailable("request could not be started: \(error)")))
            callEnded(call, answer, sentAt: sentAt)
        }
    }

    private func answered<Value>(_ call: VoucherifyCall<Value>, _ result: Result<HTTPClientResponse, HTTPClientError>, sentAt: Int64) {
        switch result {
        case .failure(let error):
            callEnded(call, CallAnswer(error), sentAt: sentAt)
        case .success(let response):
            logger.debug("Voucherify answered",
                         metadata: call.logMetadata.merging(["status": "\(response.status)", "http": "\(response.httpVersion)"]) { $1 })
            let now = Timestamp(millisecondsSince1970: loop.nowMilliseconds)
            call.admission.observe(RateLimitObservation(status: response.status, headers: response.headers, now: now))
            callEnded(call, call.interpret(response, now), sentAt: sentAt)
        }
    }

    /// Every attempt ends here, once: metrics, circuit, log, then the call retries or finishes.
    private func callEnded<Value>(_ call: VoucherifyCall<Value>, _ answer: CallAnswer<Value>, sentAt: Int64) {
        let now = loop.monotonicMilliseconds
        shared.onCall?(answer.kind.outcome, now - sentAt)
        call.settle(answer.kind.health, now: now)
        logFailure(answer, of: call, now: now)
        guard !call.isFinished else { return }
        if case .failure = answer.result, call.retries, answer.kind.isRetryable,
           let delay = configuration.retry.delayBeforeRetry(afterAttempt: call.attempts, now: now, deadline: call.deadline, using: &random) {
            do {
                call.retryTimer = try Timer.schedule(on: loop, after: Int(delay)) { [weak self] in
                    call.retryTimer = nil
                    self?.perform(call)
                }
                return
            } catch {
                // No timer, no retry: the attempt's own failure stands.
            }
        }
        call.finish(answer.result, now: now)
    }

    /// One line per failure class per minute for the whole process, with the count held back.
    /// Voucherify's own error text appears here (truncated), never in what callers get.
    private func logFailure<Value>(_ answer: CallAnswer<Value>, of call: VoucherifyCall<Value>, now: Int64) {
        guard let failureClass = answer.kind.failureClass, case .failure(let error) = answer.result,
              let suppressed = shared.failureLog.admit(failureClass, now: now) else { return }
        var metadata = call.logMetadata.merging([
            "class": "\(failureClass.rawValue)", "error": "\(error)", "suppressed_since_last": "\(suppressed)",
        ]) { $1 }
        if let message = answer.upstreamMessage { metadata["voucherify_message"] = "\(message)" }
        switch failureClass {
        case .credentials:
            logger.error("Voucherify rejected the credentials; check VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN", metadata: metadata)
        case .requestSetup:
            logger.error("could not start a Voucherify request", metadata: metadata)
        case .rateLimited:
            if case .rateLimited(let seconds) = error { metadata["retry_after_s"] = "\(max(1, seconds ?? 1))" }
            logger.warning("Voucherify rate limit reached; upstream calls pause", metadata: metadata)
        case .otherClientError:
            logger.info("Voucherify refused a request", metadata: metadata)
        default:
            logger.warning("Voucherify call failed", metadata: metadata)
        }
    }
}

/// One member's paged read: the pages still to come, what arrived, and the caller's completion.
/// Once it fails, every page still under way is stopped.
final class MemberRead {
    let campaign: String
    let member: String
    let deadline: Int64
    let admission: UpstreamAdmission
    var expectedPages = 0
    private let loop: Loop
    private var completion: ((Result<[PointsBucket], VoucherifyError>) -> Void)?
    private var pending: [Int: VoucherifyCall<PointsExpirationPage>] = [:]
    private var pages: [Int: [PointsBucket]] = [:]

    init(loop: Loop, campaign: String, member: String, deadline: Int64, admission: UpstreamAdmission,
         completion: @escaping (Result<[PointsBucket], VoucherifyError>) -> Void) {
        self.loop = loop
        self.campaign = campaign
        self.member = member
        self.deadline = deadline
        self.admission = admission
        self.completion = completion
    }

    var isFinished: Bool { completion == nil }

    func track(page number: Int, _ call: VoucherifyCall<PointsExpirationPage>) {
        pending[number] = call
    }

    func arrived(page number: Int, buckets: [PointsBucket]) {
        pages[number] = buckets
        pending[number] = nil
    }

    func fail(_ error: VoucherifyError) {
        guard let completion else { return }
        self.completion = nil
        let now = loop.monotonicMilliseconds
        for call in pending.values { call.abandon(now: now) }
        pending.removeAll()
        // Deferred: a failure can be known inside `fetchMemberBuckets` (circuit open, admission
        // denied at once), and the caller must never be called back from inside its own call.
        loop.nextTick { completion(.failure(error)) }
    }

    /// Done when every page arrived. An empty page ends the list early (Voucherify's `total`
    /// can change between pages): buckets after it are not trusted to be contiguous.
    func finishIfComplete() {
        guard let completion, expectedPages > 0, pages.count == expectedPages else { return }
        self.completion = nil
        var buckets: [PointsBucket] = []
        for page in 1...expectedPages {
            guard let items = pages[page], !items.isEmpty else { break }
            buckets.append(contentsOf: items)
        }
        loop.nextTick { completion(.success(buckets)) }
    }
}
