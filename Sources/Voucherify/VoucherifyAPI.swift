import Codecs
import EventLoop
import ExpiryDomain
import HTTPClient
import Logging

/// Voucherify's member points-expiration endpoint, paged, on one loop's curl multi handle.
/// Every HTTP call first passes the process's circuit breaker, then the caller's admission; a
/// page GET that failed in a way that may pass is tried again within the caller's deadline.
/// Loop-confined.
public final class VoucherifyAPI {
    /// Voucherify's caps: `limit` ≤ 100 and `page` ≤ 100, so at most 10,000 buckets are reachable.
    public static let pageSize = 100
    public static let maxPages = 100

    private let curl: CurlMulti
    private let configuration: VoucherifyConfiguration
    private let shared: VoucherifyShared
    private let logger: Logger
    private let headers: [(name: String, value: String)]
    /// Jitter for the retry backoff.
    private var random = SystemRandomNumberGenerator()
    private var loop: Loop { curl.loop }

    public init(curl: CurlMulti, configuration: VoucherifyConfiguration, shared: VoucherifyShared, logger: Logger) {
        self.curl = curl
        self.configuration = configuration
        self.shared = shared
        self.logger = logger
        headers = [
            ("X-App-Id", configuration.appID),
            ("X-App-Token", configuration.appToken),
            ("Accept", "application/json"),
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
                              circuitBreaker: shared.circuitBreaker, completion: completion)
        attempt(read.track(page: 1), of: read)
    }

    /// One call for `page`: the circuit, then the admission, then the HTTP client.
    private func attempt(_ page: PageRequest, of read: MemberRead) {
        guard !read.isFinished else { return }
        switch shared.circuitBreaker.acquire(now: loop.monotonicMilliseconds) {
        case .rejected(let rejection):
            read.fail(.unavailable(rejection.description))
        case .granted(let permit):
            page.permit = permit
            read.admission.admit(deadline: read.deadline) { [weak self] admitted in
                // A read that failed meanwhile has already handed the permit back.
                guard let self, !read.isFinished else { return }
                switch admitted {
                case .failure(let error): read.fail(error)
                case .success: send(page, of: read)
                }
            }
        }
    }

    private func send(_ page: PageRequest, of read: MemberRead) {
        page.attempts += 1
        let url = configuration.baseURL + UpstreamPath.pointsExpiration(campaign: read.campaign, member: read.member)
            + "?limit=\(Self.pageSize)&page=\(page.number)"
        // Queued time counts against the read's deadline, never against the page's own timeout.
        let request = HTTPClientRequest(
            url: url, headers: headers, version: configuration.httpVersion,
            connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds,
            totalTimeoutMilliseconds: configuration.requestTimeoutMilliseconds,
            queueDeadline: read.deadline, deadline: read.deadline)
        let sentAt = loop.monotonicMilliseconds
        do {
            page.transfer = try curl.start(request) { [weak self] result in
                page.transfer = nil
                self?.answered(page, of: read, result, sentAt: sentAt)
            }
        } catch {
            let answer = PageAnswer(kind: .setupFailed, result: .failure(.unavailable("request could not be started: \(error)")))
            callEnded(page, of: read, answer, sentAt: sentAt)
        }
    }

    private func answered(_ page: PageRequest, of read: MemberRead, _ result: Result<HTTPClientResponse, HTTPClientError>,
                          sentAt: Int64) {
        switch result {
        case .failure(let error):
            callEnded(page, of: read, PageAnswer(error), sentAt: sentAt)
        case .success(let response):
            logger.debug("Voucherify answered",
                         metadata: ["page": "\(page.number)", "status": "\(response.status)", "http": "\(response.httpVersion)"])
            let now = Timestamp(millisecondsSince1970: loop.nowMilliseconds)
            read.admission.observe(RateLimitObservation(status: response.status, headers: response.headers, now: now))
            callEnded(page, of: read, PageAnswer(response, now: now), sentAt: sentAt)
        }
    }

    /// Every call ends here, once: metrics, circuit, log, then the read goes on, retries or fails.
    private func callEnded(_ page: PageRequest, of read: MemberRead, _ answer: PageAnswer, sentAt: Int64) {
        let now = loop.monotonicMilliseconds
        shared.onCall?(answer.kind.outcome, now - sentAt)
        page.settle(answer.kind.health, in: shared.circuitBreaker, now: now)
        logFailure(answer, page: page.number, now: now)
        guard !read.isFinished else { return }
        switch answer.result {
        case .success(let contents):
            arrived(page, contents, of: read)
        case .failure(let failure):
            guard answer.kind.isRetryable,
                  let delay = configuration.retry.delayBeforeRetry(afterAttempt: page.attempts, now: now, deadline: read.deadline,
                                                                   using: &random) else {
                return read.fail(failure)
            }
            do {
                page.retryTimer = try Timer.schedule(on: loop, after: Int(delay)) { [weak self] in
                    page.retryTimer = nil
                    self?.attempt(page, of: read)
                }
            } catch {
                // No timer, no retry: the call's own failure stands.
                read.fail(failure)
            }
        }
    }

    private func arrived(_ page: PageRequest, _ contents: PointsExpirationPage, of read: MemberRead) {
        read.arrived(page, buckets: contents.buckets)
        if page.number == 1 {
            let pageCount = PointsExpirationPage.pageCount(total: contents.total, pageSize: Self.pageSize, maxPages: Self.maxPages)
            read.expectedPages = contents.buckets.isEmpty ? 1 : pageCount
            for number in stride(from: 2, through: read.expectedPages, by: 1) where !read.isFinished {
                attempt(read.track(page: number), of: read)
            }
        }
        read.finishIfComplete()
    }

    /// One line per failure class per minute for the whole process, with the count held back.
    /// Voucherify's own error text appears here (truncated), never in what callers get.
    private func logFailure(_ answer: PageAnswer, page: Int, now: Int64) {
        guard let failureClass = answer.kind.failureClass, case .failure(let error) = answer.result,
              let suppressed = shared.failureLog.admit(failureClass, now: now) else { return }
        var metadata: Logger.Metadata = [
            "class": "\(failureClass.rawValue)", "page": "\(page)", "error": "\(error)", "suppressed_since_last": "\(suppressed)",
        ]
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

/// One call's result in the read's terms, with its classification.
struct PageAnswer {
    var kind: UpstreamCallKind
    var result: Result<PointsExpirationPage, VoucherifyError>
    /// Voucherify's explanation of a failed call, for the log only.
    var upstreamMessage: String?

    init(kind: UpstreamCallKind, result: Result<PointsExpirationPage, VoucherifyError>) {
        self.kind = kind
        self.result = result
    }

    init(_ error: HTTPClientError) {
        kind = UpstreamCallKind(error)
        result = .failure(kind == .malformed ? .malformed(error.description) : .unavailable(error.description))
    }

    init(_ response: HTTPClientResponse, now: Timestamp) {
        kind = UpstreamCallKind(status: response.status)
        guard kind == .ok else {
            upstreamMessage = VoucherifyFailure.upstreamMessage(response.body)
            let retryAfter = kind == .rateLimited ? RateLimitHeaders.retryAfterSeconds(headers: response.headers, now: now) : nil
            result = .failure(VoucherifyFailure.classify(status: response.status, body: response.body, retryAfterSeconds: retryAfter))
            return
        }
        do {
            result = .success(try PointsExpirationPage(json: response.body))
        } catch {
            kind = .malformed
            result = .failure(error)
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
    private let circuitBreaker: CircuitBreaker
    private var completion: ((Result<[PointsBucket], VoucherifyError>) -> Void)?
    private var pending: [PageRequest] = []
    private var pages: [Int: [PointsBucket]] = [:]

    init(loop: Loop, campaign: String, member: String, deadline: Int64, admission: UpstreamAdmission, circuitBreaker: CircuitBreaker,
         completion: @escaping (Result<[PointsBucket], VoucherifyError>) -> Void) {
        self.loop = loop
        self.campaign = campaign
        self.member = member
        self.deadline = deadline
        self.admission = admission
        self.circuitBreaker = circuitBreaker
        self.completion = completion
    }

    var isFinished: Bool { completion == nil }

    func track(page number: Int) -> PageRequest {
        let page = PageRequest(number: number)
        pending.append(page)
        return page
    }

    func arrived(_ page: PageRequest, buckets: [PointsBucket]) {
        pages[page.number] = buckets
        pending.removeAll { $0 === page }
    }

    func fail(_ error: VoucherifyError) {
        guard let completion else { return }
        self.completion = nil
        let now = loop.monotonicMilliseconds
        for page in pending { page.abandon(in: circuitBreaker, now: now) }
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

/// One page through its attempts: what it waits for right now (an admission, a transfer or a
/// backoff timer) and the circuit permit of its current call.
final class PageRequest {
    let number: Int
    /// HTTP calls sent for this page so far.
    var attempts = 0
    var permit: CircuitBreaker.Permit?
    var transfer: HTTPTransfer?
    var retryTimer: Timer?

    init(number: Int) {
        self.number = number
    }

    /// The call holding `permit` ended; the circuit learns how it went.
    func settle(_ health: CircuitBreaker.CallHealth, in circuitBreaker: CircuitBreaker, now: Int64) {
        guard let permit else { return }
        self.permit = nil
        circuitBreaker.record(health, for: permit, now: now)
    }

    /// Stops whatever the page waits for. A probe it holds goes back unjudged, so the next call
    /// can probe instead of waiting out the lease.
    func abandon(in circuitBreaker: CircuitBreaker, now: Int64) {
        transfer?.cancel()
        transfer = nil
        retryTimer?.cancel()
        retryTimer = nil
        settle(.inconclusive, in: circuitBreaker, now: now)
    }
}
