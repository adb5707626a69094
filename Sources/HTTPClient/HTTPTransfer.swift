internal import CCurl
internal import CShims
import EventLoop
import Glibc

public struct HTTPClientRequest: Sendable {
    public enum Version: Sendable {
        /// HTTP/1.1 only (what a plain `http://` peer expects).
        case http1
        /// HTTP/2 over TLS when ALPN offers it, else HTTP/1.1.
        case http2OverTLS
        /// HTTP/2 without upgrade (h2c) — for peers known to speak it.
        case http2PriorKnowledge
    }

    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var version: Version
    public var connectTimeoutMilliseconds: Int
    /// The whole exchange's limit (at least 1 ms), counted from when the transfer leaves
    /// `CurlMulti`'s queue: time spent waiting for a free transfer slot never counts against it.
    public var totalTimeoutMilliseconds: Int
    /// A response body larger than this fails the transfer (a broken peer must not exhaust memory).
    /// A body streamed to a receiver (`CurlMulti.start(_:receiveBody:completion:)`) is not held
    /// and not bounded by it: the receiver bounds what it keeps.
    public var maxResponseBytes: Int
    /// Monotonic milliseconds (`Loop.monotonicMilliseconds`): a request still waiting for a free
    /// transfer slot at this instant fails with `.queueTimedOut` without being sent. nil: it waits
    /// as long as it takes.
    public var queueDeadline: Int64?
    /// Monotonic milliseconds by which the caller needs the exchange over: the total timeout is cut
    /// to the time left when the transfer leaves the queue, and the wait in the queue ends here too
    /// (a request that can no longer finish in time is not worth sending).
    public var deadline: Int64?
    /// PEM file of the certificate authorities to trust for https:// instead of the system's (a
    /// private CA). The peer is verified either way.
    public var caCertificateFile: String?
    /// For large downloads, whose total time says little: the transfer fails as `.stalled` once
    /// fewer than `bytesPerSecond` arrive per second for `seconds` in a row (curl's low-speed
    /// limit), so it may take as long as it keeps moving. nil: only the total timeout.
    public var stallLimit: StallLimit?

    public init(method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
                version: Version, connectTimeoutMilliseconds: Int = 2000, totalTimeoutMilliseconds: Int = 10000,
                maxResponseBytes: Int = 16 << 20, queueDeadline: Int64? = nil, deadline: Int64? = nil, caCertificateFile: String? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.version = version
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.totalTimeoutMilliseconds = totalTimeoutMilliseconds
        self.maxResponseBytes = maxResponseBytes
        self.queueDeadline = queueDeadline
        self.deadline = deadline
        self.caCertificateFile = caCertificateFile
    }
}

/// The slowest a transfer may go for how long (`HTTPClientRequest.stallLimit`).
public struct StallLimit: Equatable, Sendable {
    public var bytesPerSecond: Int
    public var seconds: Int

    public init(bytesPerSecond: Int, seconds: Int) {
        self.bytesPerSecond = bytesPerSecond
        self.seconds = seconds
    }
}

public struct HTTPClientResponse: Sendable {
    public var status: Int
    /// Header fields of the final response, names lowercased.
    public var headers: [(name: String, value: String)]
    /// Empty when a receiver took the body as it arrived (a 2xx of a streamed transfer).
    public var body: [UInt8]
    /// 1 for HTTP/1.x, 2 for HTTP/2.
    public var httpVersion: Int

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], httpVersion: Int = 1) {
        self.status = status
        self.headers = headers
        self.body = body
        self.httpVersion = httpVersion
    }

    public func header(_ name: String) -> String? {
        headers.first(where: { $0.name == name })?.value
    }
}

public enum HTTPClientError: Error, Equatable, Sendable, CustomStringConvertible {
    case timedOut(milliseconds: Int)
    /// Still queued behind other transfers at its queue deadline: never sent.
    case queueTimedOut(waitedMilliseconds: Int)
    case connectionFailed(String)
    case responseTooLarge(limit: Int)
    /// The body receiver asked to stop: the transfer ended there.
    case aborted
    /// Slower than its `stallLimit` for that long.
    case stalled(StallLimit)
    case transport(String)
    case setup(String)

    public var description: String {
        switch self {
        case .timedOut(let ms): return "no answer within \(ms) ms"
        case .queueTimedOut(let ms): return "timed out waiting for a connection (queued \(ms) ms, never sent)"
        case .connectionFailed(let why): return "could not connect: \(why)"
        case .responseTooLarge(let limit): return "response larger than \(limit) bytes"
        case .aborted: return "the receiver of the response body stopped the transfer"
        case .stalled(let limit): return "the transfer stalled: under \(limit.bytesPerSecond) bytes/s for \(limit.seconds) s"
        case .transport(let why): return why
        case .setup(let why): return "could not set up the request: \(why)"
        }
    }
}

/// One HTTP exchange: owns its `CURL*` easy handle and the header list curl reads from, and
/// frees both in `deinit` (after the multi handle has let go of it). Loop thread only.
public final class HTTPTransfer {
    let easy: UnsafeMutableRawPointer
    /// curl reads this list for as long as the transfer runs; it lives (and dies) with the handle.
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let request: HTTPClientRequest
    private var completion: ((Result<HTTPClientResponse, HTTPClientError>) -> Void)?
    /// Takes a 2xx body chunk by chunk instead of `responseBody`; false stops the transfer.
    private let bodyReceiver: ((UnsafeRawBufferPointer) -> Bool)?
    private var responseBody: [UInt8] = []
    private var responseHeaders: [(name: String, value: String)] = []
    /// The status of the response whose headers curl is passing on (a 1xx is followed by the
    /// final one, so by the first body byte it is the final status); nil before any status line.
    private var responseStatus: Int?
    /// Why this side ended the body's delivery (curl then reports a write error).
    private var bodyRefused: BodyRefusal?
    private enum BodyRefusal { case overflowed, receiverStopped }
    /// The total timeout curl was given when the transfer left the queue (for the error message).
    private var appliedTotalTimeoutMilliseconds: Int
    /// When it left the queue (monotonic ms): a timeout well before the total one is the stall limit's.
    private var handedToCurlAt: Int64 = 0
    /// When `CurlMulti.start` accepted it (monotonic ms): the wait in the queue is measured from here.
    let acceptedAt: Int64
    weak var multi: CurlMulti?

    init(request: HTTPClientRequest, acceptedAt: Int64, bodyReceiver: ((UnsafeRawBufferPointer) -> Bool)?,
         completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void) throws {
        guard let easy = curl_easy_init() else { throw HTTPClientError.setup("curl_easy_init failed") }
        self.easy = easy
        self.request = request
        self.acceptedAt = acceptedAt
        self.bodyReceiver = bodyReceiver
        self.completion = completion
        appliedTotalTimeoutMilliseconds = max(1, request.totalTimeoutMilliseconds)
        try configure()
    }

    /// When waiting in the queue stops being worthwhile: the earlier of the request's deadlines.
    var queueExpiry: Int64? {
        switch (request.queueDeadline, request.deadline) {
        case let (queue?, end?): return min(queue, end)
        case let (queue, end): return queue ?? end
        }
    }

    func isQueueExpired(now: Int64) -> Bool {
        queueExpiry.map { $0 <= now } ?? false
    }

    /// Gives curl the total timeout as the transfer leaves the queue: the request's own, cut to
    /// what is left before its deadline. curl starts counting when the handle is added, which
    /// follows at once, so queued time never counts. Only called while the deadline is ahead.
    func setTotalTimeout(now: Int64) throws {
        var timeout = max(1, request.totalTimeoutMilliseconds)
        if let deadline = request.deadline, deadline > now {
            timeout = Int(min(Int64(timeout), deadline - now))
        }
        appliedTotalTimeoutMilliseconds = timeout
        handedToCurlAt = now
        try set(CURLOPT_TIMEOUT_MS, timeout)
    }

    deinit {
        curl_easy_cleanup(easy)
        curl_slist_free_all(headerList)
    }

    /// Stops the transfer; its completion will not run.
    public func cancel() {
        completion = nil
        multi?.cancel(self)
    }

    private func set(_ option: CURLoption, _ value: Int) throws {
        try check(pe_curl_easy_setopt_long(easy, option, value), option)
    }

    private func set(_ option: CURLoption, _ value: String) throws {
        try check(pe_curl_easy_setopt_string(easy, option, value), option)
    }

    private func check(_ code: CURLcode, _ option: CURLoption) throws {
        guard code == CURLE_OK else {
            throw HTTPClientError.setup("curl option \(option.rawValue): \(String(cString: curl_easy_strerror(code)))")
        }
    }

    private func configure() throws {
        try set(CURLOPT_URL, request.url)
        // The path goes out exactly as the caller built it: curl would otherwise collapse `.` and
        // `..` segments and send a request for some other resource.
        try set(CURLOPT_PATH_AS_IS, 1)
        try set(CURLOPT_PROTOCOLS_STR, "http,https")
        try set(CURLOPT_NOSIGNAL, 1)
        try set(CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMilliseconds)
        try set(CURLOPT_TCP_NODELAY, 1)
        try set(CURLOPT_TCP_KEEPALIVE, 1)
        // Empty string: offer every encoding curl can decode, and decode transparently.
        try set(CURLOPT_ACCEPT_ENCODING, "")
        // Wait for a connection that can multiplex rather than opening a second one.
        try set(CURLOPT_PIPEWAIT, 1)
        switch request.version {
        case .http1: try set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        case .http2OverTLS: try set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        case .http2PriorKnowledge: try set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE))
        }
        if let caCertificateFile = request.caCertificateFile { try set(CURLOPT_CAINFO, caCertificateFile) }
        if let stall = request.stallLimit {
            try set(CURLOPT_LOW_SPEED_LIMIT, max(1, stall.bytesPerSecond))
            try set(CURLOPT_LOW_SPEED_TIME, max(1, stall.seconds))
        }
        if request.method != "GET" { try set(CURLOPT_CUSTOMREQUEST, request.method) }
        if !request.body.isEmpty || request.method == "POST" {
            try set(CURLOPT_POSTFIELDSIZE, request.body.count)
            // COPYPOSTFIELDS copies: the request's array need not outlive this call.
            try request.body.withUnsafeBytes { bytes in
                try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(("" as StaticString).utf8Start))), CURLOPT_COPYPOSTFIELDS)
            }
        }
        // Without an explicit "Expect:" curl would wait for 100-continue on larger bodies.
        for line in request.headers.map({ "\($0.name): \($0.value)" }) + ["Expect:"] {
            guard let appended = curl_slist_append(headerList, line) else { throw HTTPClientError.setup("curl_slist_append failed") }
            headerList = appended
        }
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_HTTPHEADER, headerList), CURLOPT_HTTPHEADER)

        let me = Unmanaged.passUnretained(self).toOpaque()
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_PRIVATE, me), CURLOPT_PRIVATE)
        try check(pe_curl_easy_setopt_write_function(easy, CURLOPT_WRITEFUNCTION) { data, size, count, user in
            guard let data, let user else { return 0 }
            return Unmanaged<HTTPTransfer>.fromOpaque(user).takeUnretainedValue().received(body: data, size * count)
        }, CURLOPT_WRITEFUNCTION)
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, me), CURLOPT_WRITEDATA)
        try check(pe_curl_easy_setopt_write_function(easy, CURLOPT_HEADERFUNCTION) { data, size, count, user in
            guard let data, let user else { return 0 }
            return Unmanaged<HTTPTransfer>.fromOpaque(user).takeUnretainedValue().received(headerLine: data, size * count)
        }, CURLOPT_HEADERFUNCTION)
        try check(pe_curl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, me), CURLOPT_HEADERDATA)
    }

    private func received(body data: UnsafeMutablePointer<CChar>, _ length: Int) -> Int {
        if let bodyReceiver, let responseStatus, (200..<300).contains(responseStatus) {
            // Nothing to hand over in an empty write, and 0 would not stop curl anyway.
            guard length == 0 || bodyReceiver(UnsafeRawBufferPointer(start: data, count: length)) else {
                bodyRefused = .receiverStopped
                return 0
            }
            return length
        }
        guard responseBody.count + length <= request.maxResponseBytes else {
            bodyRefused = .overflowed
            return 0
        }
        data.withMemoryRebound(to: UInt8.self, capacity: length) {
            responseBody.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
        }
        return length
    }

    private func received(headerLine data: UnsafeMutablePointer<CChar>, _ length: Int) -> Int {
        let line = data.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
        if line.hasPrefix("HTTP/") {
            // A new status line (after 100 Continue or a redirect): only the final response counts.
            responseHeaders.removeAll()
            responseStatus = Self.status(ofStatusLine: line)
        } else if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t\r\n")
            responseHeaders.append((name, value))
        }
        return length
    }

    /// The code in `HTTP/1.1 200 OK` or curl's `HTTP/2 200` (the three digits after the first space).
    private static func status(ofStatusLine line: String) -> Int? {
        guard let space = line.firstIndex(of: " ") else { return nil }
        let code = line[line.index(after: space)...].prefix(3)
        guard code.count == 3, code.allSatisfy(\.isASCII) else { return nil }
        return Int(code)
    }

    /// curl 7.88 keeps an HTTP/2 connection on which a stream timed out or broke, and every later
    /// stream on it then fails at once ("Error in the HTTP2 framing layer"): one hung request
    /// would fail all that follow. After such an ending the connection's socket is shut down
    /// (curl still owns it and closes it): curl's liveness check then finds the connection dead
    /// and the next transfer opens a fresh one. Other streams still on it end too; on a hung
    /// connection they would not have been answered either. A timeout alone does not prove the
    /// connection hung (deadlines cut timeouts short), so after a timeout a connection still
    /// carrying other streams is left to them; the last stream to time out retires it. Only the
    /// transfer finds its connection, and only until the multi handle lets go of it, so this runs
    /// just before. An HTTP/1.1 connection is closed by curl itself on these errors: none is found.
    func retireConnection(after code: CURLcode, sharedWithOthers: (Int32) -> Bool) {
        guard code == CURLE_OPERATION_TIMEDOUT || code == CURLE_HTTP2 || code == CURLE_HTTP2_STREAM else { return }
        guard let socket = activeSocket else { return }
        if code == CURLE_OPERATION_TIMEDOUT, sharedWithOthers(socket) { return }
        shutdown(socket, Int32(SHUT_RDWR))
    }

    /// The socket of the connection this transfer runs on, while it runs.
    var activeSocket: Int32? {
        var socket = CURL_SOCKET_BAD
        guard pe_curl_easy_getinfo_socket(easy, CURLINFO_ACTIVESOCKET, &socket) == CURLE_OK, socket != CURL_SOCKET_BAD else { return nil }
        return socket
    }

    /// curl connected this transfer to its peer (a new connection or a reused one), now or
    /// before it ended. Read from the peer's address, which curl records once connected:
    /// curl 7.88 reports no connect time for a reused connection.
    public var hasConnection: Bool {
        var address: UnsafeMutableRawPointer?
        guard pe_curl_easy_getinfo_pointer(easy, CURLINFO_PRIMARY_IP, &address) == CURLE_OK, let address else { return false }
        return address.load(as: CChar.self) != 0
    }

    /// curl is done with it (the multi handle has already let go).
    func finish(_ code: CURLcode) {
        complete(outcome(code))
    }

    /// It never reached curl (its wait in the queue ran out, or curl refused it).
    func fail(_ error: HTTPClientError) {
        complete(.failure(error))
    }

    private func complete(_ result: Result<HTTPClientResponse, HTTPClientError>) {
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }

    private func outcome(_ code: CURLcode) -> Result<HTTPClientResponse, HTTPClientError> {
        switch code {
        case CURLE_OK:
            var status = 0
            _ = pe_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            var version = 0
            _ = pe_curl_easy_getinfo_long(easy, CURLINFO_HTTP_VERSION, &version)
            return .success(HTTPClientResponse(status: status, headers: responseHeaders, body: responseBody,
                                               httpVersion: version >= Int(CURL_HTTP_VERSION_2_0) ? 2 : 1))
        case CURLE_OPERATION_TIMEDOUT where !hasConnection:
            // Never connected (a blackholed host): the peer is unreachable, not slow to answer.
            // curl ends the connect at the earlier of its two limits.
            let limit = min(request.connectTimeoutMilliseconds, appliedTotalTimeoutMilliseconds)
            return .failure(.connectionFailed("connect timed out after \(limit) ms"))
        case CURLE_OPERATION_TIMEDOUT:
            // curl reports its low-speed limit as a timeout too; the total one cannot have passed yet.
            if let stall = request.stallLimit,
               Loop.monotonicMilliseconds() - handedToCurlAt < Int64(appliedTotalTimeoutMilliseconds) - 500 {
                return .failure(.stalled(stall))
            }
            return .failure(.timedOut(milliseconds: appliedTotalTimeoutMilliseconds))
        case CURLE_WRITE_ERROR where bodyRefused == .overflowed:
            return .failure(.responseTooLarge(limit: request.maxResponseBytes))
        case CURLE_WRITE_ERROR where bodyRefused == .receiverStopped:
            return .failure(.aborted)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_SSL_CONNECT_ERROR:
            return .failure(.connectionFailed(String(cString: curl_easy_strerror(code))))
        default:
            return .failure(.transport(String(cString: curl_easy_strerror(code))))
        }
    }
}

private extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
