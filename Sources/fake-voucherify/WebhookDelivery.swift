import CCurl
import CShims
import Glibc

/// One webhook POST: where, what, and the signature header (nil: sent unsigned).
struct WebhookRequest: Sendable {
    let url: String
    let body: [UInt8]
    let signature: String?
}

/// How a delivery ended: the receiver's answer, or curl's reason there was none.
enum WebhookOutcome: Sendable {
    case answered(status: Int, httpVersion: String, body: String)
    case failed(String)
}

/// Delivers webhooks with libcurl's blocking easy interface, each on a detached thread of its own,
/// so the event loop keeps serving (slow API answers included) while a receiver takes up to the
/// 10 s Voucherify allows.
enum WebhookDelivery {
    /// Voucherify counts no answer within 10 s as a failed delivery.
    static let timeoutMs = 10_000

    /// curl's global set-up is not thread-safe: call once at start-up, before any delivery thread.
    /// There is no matching cleanup: a delivery thread may still be running when the loop stops,
    /// and the process exits right after.
    static func initializeCurl() throws {
        let rc = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        guard rc == CURLE_OK else { throw StartupError(description: "curl_global_init failed: \(String(cString: curl_easy_strerror(rc)))") }
    }

    /// h2c with prior knowledge for http:// (the points-expiry service speaks only HTTP/2), HTTP/2
    /// through ALPN (or HTTP/1.1 if refused) for https://; nil for any other scheme.
    static func curlHTTPVersion(for url: String) -> Int? {
        let lowered = url.lowercased()
        if lowered.hasPrefix("http://") { return Int(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) }
        if lowered.hasPrefix("https://") { return Int(CURL_HTTP_VERSION_2TLS) }
        return nil
    }

    /// `completion` runs exactly once, on the delivery thread (or on the caller's thread when no
    /// thread could be started).
    static func start(_ request: WebhookRequest, completion: @escaping @Sendable (WebhookOutcome) -> Void) {
        let job = Unmanaged.passRetained(DeliveryJob(request: request, completion: completion)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            guard let arg else { return nil }
            let job = Unmanaged<DeliveryJob>.fromOpaque(arg).takeRetainedValue()
            job.completion(CurlPost.perform(job.request))
            return nil
        }, job)
        guard rc == 0 else {
            Unmanaged<DeliveryJob>.fromOpaque(job).release()
            completion(.failed("cannot start a delivery thread: \(String(cString: strerror(rc)))"))
            return
        }
        // Nobody joins it: the thread reports through `completion` and its resources go when it ends.
        let detached = pthread_detach(thread)
        if detached != 0 { fputs("fake-voucherify: pthread_detach failed: \(String(cString: strerror(detached)))\n", stderr) }
    }

    /// What a delivery thread owns: handed over retained, released when the thread takes it.
    private final class DeliveryJob {
        let request: WebhookRequest
        let completion: @Sendable (WebhookOutcome) -> Void

        init(request: WebhookRequest, completion: @escaping @Sendable (WebhookOutcome) -> Void) {
            self.request = request
            self.completion = completion
        }
    }
}

/// One blocking POST on the calling thread. Owns the easy handle, its header list and error buffer,
/// and frees all three in `deinit`.
private final class CurlPost {
    /// The receiver's answer is only shown to a person; more than this is cut off.
    static let maxResponseBytes = 64 * 1024

    private let easy: UnsafeMutableRawPointer
    private var headers: UnsafeMutablePointer<curl_slist>?
    /// curl writes its detailed error text here (CURLOPT_ERRORBUFFER needs a stable address).
    private let errorText = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
    private var responseBody: [UInt8] = []

    static func perform(_ request: WebhookRequest) -> WebhookOutcome {
        do {
            return try CurlPost().run(request)
        } catch {
            return .failed("\(error)")
        }
    }

    private init() throws {
        errorText.initialize(to: 0)
        guard let easy = curl_easy_init() else {
            errorText.deallocate()
            throw SetupError(description: "curl_easy_init failed")
        }
        self.easy = easy
    }

    deinit {
        curl_easy_cleanup(easy)
        curl_slist_free_all(headers)
        errorText.deallocate()
    }

    private func run(_ request: WebhookRequest) throws -> WebhookOutcome {
        try configure(request)
        let code = curl_easy_perform(easy)
        guard code == CURLE_OK else {
            let detail = String(cString: errorText)
            return .failed(detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
        }
        var status = 0
        try check(pe_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status), "CURLINFO_RESPONSE_CODE")
        var version = 0
        try check(pe_curl_easy_getinfo_long(easy, CURLINFO_HTTP_VERSION, &version), "CURLINFO_HTTP_VERSION")
        return .answered(status: status, httpVersion: CurlPost.versionName(version),
                         body: String(decoding: responseBody, as: UTF8.self))
    }

    private func configure(_ request: WebhookRequest) throws {
        guard let version = WebhookDelivery.curlHTTPVersion(for: request.url) else {
            throw SetupError(description: "the webhook URL must start with http:// or https://")
        }
        try set(CURLOPT_URL, request.url)
        try set(CURLOPT_PROTOCOLS_STR, "http,https")
        try set(CURLOPT_HTTP_VERSION, version)
        try set(CURLOPT_NOSIGNAL, 1)  // required when curl runs outside the main thread
        try set(CURLOPT_TIMEOUT_MS, WebhookDelivery.timeoutMs)
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorText), "CURLOPT_ERRORBUFFER")

        try set(CURLOPT_POSTFIELDSIZE, request.body.count)
        // COPYPOSTFIELDS copies the bytes, so the request's array need not outlive this call.
        try request.body.withUnsafeBytes { bytes in
            let start = UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(("" as StaticString).utf8Start))
            try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, start), "CURLOPT_COPYPOSTFIELDS")
        }

        // "Expect:" stops curl waiting for 100-continue before sending a larger body over HTTP/1.1.
        var lines = ["content-type: application/json", "Expect:"]
        if let signature = request.signature { lines.append("x-voucherify-signature: \(signature)") }
        for line in lines {
            guard let appended = curl_slist_append(headers, line) else { throw SetupError(description: "curl_slist_append failed") }
            headers = appended
        }
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_HTTPHEADER, headers), "CURLOPT_HTTPHEADER")

        try check(pe_curl_easy_setopt_write_function(easy, CURLOPT_WRITEFUNCTION) { data, size, count, user in
            guard let data, let user else { return 0 }
            return Unmanaged<CurlPost>.fromOpaque(user).takeUnretainedValue().received(data, size * count)
        }, "CURLOPT_WRITEFUNCTION")
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, Unmanaged.passUnretained(self).toOpaque()), "CURLOPT_WRITEDATA")
    }

    /// Keeps the first `maxResponseBytes` and accepts the rest unseen, so a long answer does not
    /// turn a delivered webhook into a failed one.
    private func received(_ data: UnsafeMutablePointer<CChar>, _ length: Int) -> Int {
        let kept = min(length, CurlPost.maxResponseBytes - responseBody.count)
        if kept > 0 {
            data.withMemoryRebound(to: UInt8.self, capacity: kept) {
                responseBody.append(contentsOf: UnsafeBufferPointer(start: $0, count: kept))
            }
        }
        return length
    }

    private func set(_ option: CURLoption, _ value: Int) throws {
        try check(pe_curl_easy_setopt_long(easy, option, value), "curl option \(option.rawValue)")
    }

    private func set(_ option: CURLoption, _ value: String) throws {
        try check(pe_curl_easy_setopt_string(easy, option, value), "curl option \(option.rawValue)")
    }

    private func check(_ code: CURLcode, _ what: String) throws {
        guard code == CURLE_OK else { throw SetupError(description: "\(what): \(String(cString: curl_easy_strerror(code)))") }
    }

    private static func versionName(_ curlVersion: Int) -> String {
        switch curlVersion {
        case Int(CURL_HTTP_VERSION_1_0): return "1.0"
        case Int(CURL_HTTP_VERSION_1_1): return "1.1"
        case Int(CURL_HTTP_VERSION_2_0): return "2"
        case Int(CURL_HTTP_VERSION_3): return "3"
        default: return "unknown"
        }
    }

    private struct SetupError: Error, CustomStringConvertible {
        let description: String
    }
}
