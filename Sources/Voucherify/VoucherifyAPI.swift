import Codecs
import EventLoop
import ExpiryDomain
import HTTPClient
import Logging

/// Voucherify's member points-expiration endpoint, paged, on one loop's curl multi handle.
public final class VoucherifyAPI {
    /// Voucherify's caps: `limit` ≤ 100 and `page` ≤ 100, so at most 10,000 buckets are reachable.
    public static let pageSize = 100
    public static let maxPages = 100

    private let curl: CurlMulti
    private let configuration: VoucherifyConfiguration
    private let logger: Logger
    private let rateLimit: RateLimitGate

    public init(curl: CurlMulti, configuration: VoucherifyConfiguration, rateLimit: RateLimitGate, logger: Logger) {
        self.curl = curl
        self.configuration = configuration
        self.rateLimit = rateLimit
        self.logger = logger
    }

    /// Every bucket of one member, in Voucherify's order. Page 1 first; once it gives `total`,
    /// the remaining pages are fetched concurrently. Completion runs once, on the loop, never
    /// from inside this call.
    public func fetchMemberBuckets(campaign: String, member: String,
                                   completion: @escaping (Result<[PointsBucket], VoucherifyError>) -> Void) {
        let fetch = MemberFetch(completion: completion)
        if let seconds = rateLimit.secondsBlocked(nowMilliseconds: curl.loop.monotonicMilliseconds) {
            curl.loop.nextTick { fetch.fail(.rateLimited(retryAfterSeconds: seconds)) }
            return
        }
        requestPage(1, campaign: campaign, member: member, fetch: fetch)
    }

    private func requestPage(_ page: Int, campaign: String, member: String, fetch: MemberFetch) {
        let url = "\(configuration.baseURL)/v1/loyalties/\(PercentEncoding.pathSegment(campaign))/members/"
            + "\(PercentEncoding.pathSegment(member))/points-expiration?limit=\(Self.pageSize)&page=\(page)"
        let request = HTTPClientRequest(
            url: url,
            headers: [
                ("X-App-Id", configuration.appID),
                ("X-App-Token", configuration.appToken),
                ("Accept", "application/json"),
                ("User-Agent", "points-expiry/1"),
                ("X-Voucherify-Channel", "points-expiry"),
            ],
            version: configuration.httpVersion,
            connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds,
            totalTimeoutMilliseconds: configuration.requestTimeoutMilliseconds)
        do {
            let transfer = try curl.start(request) { [weak self] result in
                self?.pageFinished(page, result, campaign: campaign, member: member, fetch: fetch)
            }
            fetch.transfers.append(transfer)
        } catch {
            logger.error("could not start a Voucherify request", metadata: ["error": "\(error)"])
            curl.loop.nextTick { fetch.fail(.unavailable("request could not be started")) }
        }
    }

    private func pageFinished(_ page: Int, _ result: Result<HTTPClientResponse, HTTPClientError>,
                              campaign: String, member: String, fetch: MemberFetch) {
        guard !fetch.isFinished else { return }
        let response: HTTPClientResponse
        switch result {
        case .failure(let error):
            logger.warning("Voucherify request failed", metadata: ["page": "\(page)", "error": "\(error)"])
            return fetch.fail(.unavailable(error.description))
        case .success(let value):
            response = value
        }
        logger.debug("Voucherify answered", metadata: ["page": "\(page)", "status": "\(response.status)", "http": "\(response.httpVersion)"])
        guard response.status == 200 else {
            let retryAfter = RateLimitHeaders.retryAfterSeconds(headers: response.headers, now: Timestamp(millisecondsSince1970: curl.loop.nowMilliseconds))
            if response.status == 429 {
                // retryAfter is clamped to RateLimitHeaders.maxRetryAfterSeconds: no overflow.
                rateLimit.block(untilMilliseconds: curl.loop.monotonicMilliseconds + Int64(retryAfter ?? 1) * 1000)
            }
            let error = VoucherifyFailure.classify(status: response.status, body: response.body, retryAfterSeconds: retryAfter)
            if case .rejectedCredentials = error {
                logger.error("Voucherify rejected the credentials; check VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN",
                             metadata: ["status": "\(response.status)"])
            }
            return fetch.fail(error)
        }
        let parsed: PointsExpirationPage
        do {
            parsed = try PointsExpirationPage(json: response.body)
        } catch {
            logger.warning("unreadable Voucherify page", metadata: ["page": "\(page)", "error": "\(error)"])
            return fetch.fail(error)
        }
        fetch.pages[page] = parsed.buckets
        if page == 1 {
            let pageCount = PointsExpirationPage.pageCount(total: parsed.total, pageSize: Self.pageSize, maxPages: Self.maxPages)
            fetch.expectedPages = parsed.buckets.isEmpty ? 1 : pageCount
            for next in stride(from: 2, through: fetch.expectedPages, by: 1) {
                requestPage(next, campaign: campaign, member: member, fetch: fetch)
            }
        }
        fetch.finishIfComplete()
    }
}

/// One member's paged read; its transfers stop as soon as it fails.
final class MemberFetch {
    fileprivate var transfers: [HTTPTransfer] = []
    fileprivate var pages: [Int: [PointsBucket]] = [:]
    fileprivate var expectedPages = 0
    private var completion: ((Result<[PointsBucket], VoucherifyError>) -> Void)?

    fileprivate init(completion: @escaping (Result<[PointsBucket], VoucherifyError>) -> Void) {
        self.completion = completion
    }

    fileprivate var isFinished: Bool { completion == nil }

    fileprivate func fail(_ error: VoucherifyError) {
        guard let completion else { return }
        self.completion = nil
        stopTransfers()
        completion(.failure(error))
    }

    /// Done when every page arrived. An empty page ends the list early (Voucherify's `total`
    /// can change between pages): buckets after it are not trusted to be contiguous.
    fileprivate func finishIfComplete() {
        guard let completion, expectedPages > 0, pages.count == expectedPages else { return }
        self.completion = nil
        transfers.removeAll()
        var buckets: [PointsBucket] = []
        for page in 1...expectedPages {
            guard let items = pages[page], !items.isEmpty else { break }
            buckets.append(contentsOf: items)
        }
        completion(.success(buckets))
    }

    private func stopTransfers() {
        for transfer in transfers { transfer.cancel() }
        transfers.removeAll()
    }
}
