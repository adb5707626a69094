import Codecs
import ExpiryDomain
import HTTPClient

/// Why an export download did not complete.
public enum ExportDownloadError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The URL is not on a host this configuration sends credentials to: nothing was sent. The
    /// text names the host, never the URL (its query holds a token).
    case refusedURL(String)
    /// 401/403 from the download: the URL's token has most likely expired. Reading the export
    /// again gives a fresh URL.
    case tokenRejected(status: Int)
    /// The receiver returned false: the download stopped there.
    case receiverStopped
    /// Any other failure: the circuit, the admission, the network, another status.
    case failed(VoucherifyError)

    public var description: String {
        switch self {
        case .refusedURL(let why): return why
        case .tokenRejected(let status): return "the export download was refused (HTTP \(status)): its token has likely expired"
        case .receiverStopped: return "the export download was stopped by its receiver"
        case .failed(let error): return "the export download failed: \(error)"
        }
    }
}

/// The points-expiration export (`POST …/points-expiration/export`, then `GET /v1/exports/{id}`
/// until done, then the file at its `result.url`), each call on the path every Voucherify call
/// takes (`perform`). Completions run once, on the loop, never from inside the call.
extension VoucherifyAPI {
    /// The export's columns, in Voucherify's field names (the CSV's header row may label them
    /// for people instead, "Voucher ID" for `voucher_id`): every column the aggregation reads.
    public static let pointsExpirationExportFields = ExportColumn.allCases.map(\.rawValue)

    /// Largest error body read from the download host; a 2xx body is streamed, never held.
    static let maxDownloadErrorBodyBytes = 1 << 20

    /// Asks Voucherify to export every points bucket of `campaign` (id or name), ordered by
    /// expiry date. Never retried: a second POST would start a second export, so any failure is
    /// returned as it is. A 404 is `.campaignNotFound`.
    public func createPointsExpirationExport(campaign: String, deadline: Int64, admission: any UpstreamAdmission,
                                             completion: @escaping (Result<ExportStatus, VoucherifyError>) -> Void) {
        loop.assertInLoop()
        let url = configuration.baseURL + UpstreamPath.pointsExpirationExport(campaign: campaign)
        let call = VoucherifyCall<ExportStatus>(
            request: request("POST", url: url, accept: "application/json", body: Self.exportRequestBody,
                             timeoutMilliseconds: configuration.requestTimeoutMilliseconds, deadline: deadline),
            admission: admission, circuitBreaker: shared.circuitBreaker, retries: false, logMetadata: ["call": "export_create"],
            interpret: { response, now in Self.exportAnswer(response, now: now, notFound: .campaignNotFound) },
            completion: deferred(completion))
        perform(call)
    }

    /// Where export `id` stands. A safe GET: retried like a member page.
    public func exportStatus(id: String, deadline: Int64, admission: any UpstreamAdmission,
                             completion: @escaping (Result<ExportStatus, VoucherifyError>) -> Void) {
        loop.assertInLoop()
        // `/v1/exports/` would be the list of exports, and read as a malformed answer.
        guard !id.isEmpty else { return deferred(completion)(.failure(.malformed("no export id to ask about"))) }
        let url = configuration.baseURL + UpstreamPath.export(id: id)
        let call = VoucherifyCall<ExportStatus>(
            request: request(url: url, accept: "application/json", timeoutMilliseconds: configuration.requestTimeoutMilliseconds,
                             deadline: deadline),
            admission: admission, circuitBreaker: shared.circuitBreaker, retries: true, logMetadata: ["call": "export_status"],
            interpret: { response, now in
                Self.exportAnswer(response, now: now, notFound: .rejectedRequest(status: 404, detail: "the export was not found"))
            },
            completion: deferred(completion))
        perform(call)
    }

    /// Downloads a done export's file (`ExportStatus.resultURL`) with the credentials, handing
    /// its bytes to `receive` as they arrive (on the loop, inside the HTTP client: it returns
    /// false to stop, and starts no other call from there). Only a URL on
    /// the download host or the API host is fetched (`.refusedURL` otherwise, nothing sent).
    /// Not retried (the receiver has taken bytes); limited by
    /// `VoucherifyConfiguration.downloadTimeoutMilliseconds`, its `downloadStallLimit` and `deadline`. A 401/403 is
    /// `.tokenRejected`: the URL's token expires, and the export read again gives a fresh one.
    public func downloadExport(url: String, deadline: Int64, admission: any UpstreamAdmission,
                               receive: @escaping (UnsafeRawBufferPointer) -> Bool,
                               completion: @escaping (Result<Void, ExportDownloadError>) -> Void) {
        loop.assertInLoop()
        do throws(ExportDownloadError) {
            try configuration.checkDownloadURL(url)
        } catch {
            loop.nextTick { completion(.failure(error)) }
            return
        }
        var receiverStopped = false
        var download = request(url: url, accept: "text/csv, */*", timeoutMilliseconds: configuration.downloadTimeoutMilliseconds,
                               deadline: deadline, maxResponseBytes: Self.maxDownloadErrorBodyBytes)
        download.stallLimit = configuration.downloadStallLimit
        let call = VoucherifyCall<Void>(
            request: download,
            admission: admission, circuitBreaker: downloadCircuitBreaker, retries: false, logMetadata: ["call": "export_download"],
            receiveBody: { bytes in
                guard receive(bytes) else {
                    receiverStopped = true
                    return false
                }
                return true
            },
            interpret: { response, now in Self.downloadAnswer(response, now: now) },
            completion: deferred { result in
                completion(result.mapError { Self.downloadError($0, receiverStopped: receiverStopped) })
            })
        perform(call)
    }

    /// What an answer to the export POST or GET means; `notFound` is what a 404 means for it.
    static func exportAnswer(_ response: HTTPClientResponse, now: Timestamp, notFound: VoucherifyError) -> CallAnswer<ExportStatus> {
        var answer = CallAnswer(response, now: now) { body throws(VoucherifyError) in try ExportStatus(json: body) }
        answer.notFound(means: notFound)
        return answer
    }

    /// What an answer from the download host means (its 2xx body went to the receiver).
    static func downloadAnswer(_ response: HTTPClientResponse, now: Timestamp) -> CallAnswer<Void> {
        var answer = CallAnswer<Void>(response, now: now) { _ in () }
        answer.notFound(means: .rejectedRequest(status: 404, detail: "the export file was not found"))
        if answer.kind == .rejectedCredentials {
            // The keys just worked for the export itself: this is the URL's token, which
            // expires. Not a credentials problem, and not logged as one.
            answer.kind = .rejectedRequest
            answer.result = .failure(.rejectedRequest(status: response.status, detail: downloadTokenRefused))
        }
        return answer
    }

    /// The download's failure in its caller's terms.
    static func downloadError(_ error: VoucherifyError, receiverStopped: Bool) -> ExportDownloadError {
        if receiverStopped { return .receiverStopped }
        // Only `downloadAnswer` makes a 401/403 a refused request.
        if case .rejectedRequest(let status, _) = error, status == 401 || status == 403 { return .tokenRejected(status: status) }
        return .failed(error)
    }

    /// What the log says of a 401/403 from the download host.
    private static let downloadTokenRefused = "the export download's token was refused (it expires); the export is to be read again for a fresh URL"

    /// `{"parameters":{"order":"expires_at","fields":[…]}}`.
    static let exportRequestBody: [UInt8] = {
        var writer = JSONWriter()
        writer.appendValue(.object(["parameters": .object([
            "order": .string("expires_at"),
            "fields": .array(pointsExpirationExportFields.map(JSONValue.string)),
        ])]))
        return writer.bytes
    }()

    /// `completion` run on the next loop turn: a call can end inside the method that started it
    /// (circuit open, admission refused at once), and no caller is answered from inside its call.
    private func deferred<Value, Failure>(_ completion: @escaping (Result<Value, Failure>) -> Void) -> (Result<Value, Failure>) -> Void {
        { [loop] result in loop.nextTick { completion(result) } }
    }
}

extension UpstreamPath {
    /// `/v1/loyalties/{campaign}/points-expiration/export`.
    static func pointsExpirationExport(campaign: String) -> String {
        "/v1/loyalties/\(segment(campaign))/points-expiration/export"
    }

    /// `/v1/exports/{id}`.
    static func export(id: String) -> String {
        "/v1/exports/\(segment(id))"
    }
}
