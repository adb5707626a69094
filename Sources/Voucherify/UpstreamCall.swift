import ExpiryDomain
import HTTPClient

/// How one HTTP call to Voucherify ended, for metrics (raw values are the label values).
public enum UpstreamCallOutcome: String, CaseIterable, Sendable {
    case ok
    case notFound = "not_found"
    case rateLimited = "429"
    case serverError = "5xx"
    /// No answer in time, or never sent because no connection came free before the deadline.
    case timeout
    case network
    /// Rejected credentials, any other 4xx, an unreadable answer, a request that could not start.
    case other
}

/// Called once per HTTP call `VoucherifyAPI` makes (each page, each retry), from the worker's
/// loop thread; the duration runs from the hand-off to the HTTP client to the end.
public typealias UpstreamCallObserver = @Sendable (UpstreamCallOutcome, _ durationMilliseconds: Int64) -> Void

/// What every worker's `VoucherifyAPI` in one process shares: Voucherify's health is one fact
/// for all of them.
public struct VoucherifyShared: Sendable {
    public let circuitBreaker: CircuitBreaker
    public let failureLog: FailureLogLimiter
    public let onCall: UpstreamCallObserver?

    public init(circuitBreaker: CircuitBreaker = CircuitBreaker(), failureLog: FailureLogLimiter = FailureLogLimiter(),
                onCall: UpstreamCallObserver? = nil) {
        self.circuitBreaker = circuitBreaker
        self.failureLog = failureLog
        self.onCall = onCall
    }
}

/// What one HTTP call came to. Every view of a call (metrics outcome, log class, circuit health,
/// whether to retry) is derived from this one classification.
enum UpstreamCallKind: Equatable {
    case ok
    case notFound
    case rateLimited
    case serverError
    case timedOut
    /// Still queued at the deadline: never reached Voucherify.
    case notSent
    case network
    case malformed
    case rejectedCredentials
    case rejectedRequest
    case setupFailed

    /// An answer's status (a 200 is `ok` until its body proves unreadable); mirrors
    /// `VoucherifyFailure.classify`.
    init(status: Int) {
        switch status {
        case 200: self = .ok
        case 404: self = .notFound
        case 401, 403: self = .rejectedCredentials
        case 429: self = .rateLimited
        case 500...599: self = .serverError
        default: self = .rejectedRequest
        }
    }

    init(_ error: HTTPClientError) {
        switch error {
        case .timedOut, .stalled: self = .timedOut
        case .queueTimedOut: self = .notSent
        case .connectionFailed, .transport: self = .network
        // The receiver stops a body it cannot use: Voucherify answered, with something unusable.
        case .responseTooLarge, .aborted: self = .malformed
        case .setup: self = .setupFailed
        }
    }

    var outcome: UpstreamCallOutcome {
        switch self {
        case .ok: return .ok
        case .notFound: return .notFound
        case .rateLimited: return .rateLimited
        case .serverError: return .serverError
        case .timedOut, .notSent: return .timeout
        case .network: return .network
        case .malformed, .rejectedCredentials, .rejectedRequest, .setupFailed: return .other
        }
    }

    /// nil for the answers that are not failures.
    var failureClass: UpstreamFailureClass? {
        switch self {
        case .ok, .notFound: return nil
        case .rateLimited: return .rateLimited
        case .serverError: return .serverError
        case .timedOut, .notSent: return .timeout
        case .network: return .network
        case .malformed: return .malformed
        case .rejectedCredentials: return .credentials
        case .rejectedRequest: return .otherClientError
        case .setupFailed: return .requestSetup
        }
    }

    /// A request stuck in our own queue says nothing about Voucherify; every answer (a 429
    /// included) says it is up.
    var health: CircuitBreaker.CallHealth {
        switch self {
        case .serverError, .timedOut, .network: return .failed
        case .notSent, .setupFailed: return .inconclusive
        case .ok, .notFound, .rateLimited, .malformed, .rejectedCredentials, .rejectedRequest: return .healthy
        }
    }

    /// Worth another try of the same idempotent GET: the failures that may pass. Never a 4xx
    /// (the same request gets the same refusal) nor a 429 (the admission owns waiting for it).
    var isRetryable: Bool { health == .failed }
}

extension RateLimitObservation {
    /// Largest `limit` or `remaining` taken from a header: above any Voucherify plan, and small
    /// enough that budget arithmetic on it cannot overflow.
    public static let maxHeaderCount = 1_000_000

    /// Reads `X-Rate-Limit-Limit` and `X-Rate-Limit-Remaining` (names case-insensitive; a value
    /// that is not a plain non-negative integer is absent; large ones are clamped; `remaining`
    /// never exceeds `limit`) and, on a 429, how long Voucherify said to stop: at least 1 s, 1
    /// when no header says.
    public init(status: Int, headers: [(name: String, value: String)], now: Timestamp) {
        func count(_ name: String) -> Int? {
            headers.lazy
                .filter { $0.name.utf8.elementsEqualIgnoringASCIICase(name.utf8) }
                .compactMap { RateLimitHeaders.headerInteger($0.value) }
                .first
                .map { Int(min($0, Int64(Self.maxHeaderCount))) }
        }
        let limit = count("x-rate-limit-limit")
        self.init(
            limit: limit,
            remaining: count("x-rate-limit-remaining").map { min($0, limit ?? Self.maxHeaderCount) },
            blockedForSeconds: status == 429 ? max(1, RateLimitHeaders.retryAfterSeconds(headers: headers, now: now) ?? 1) : nil)
    }
}
