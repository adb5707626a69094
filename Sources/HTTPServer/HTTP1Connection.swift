internal import CHttpParser
internal import CLibevent
import EventLoop
import Logging

/// One HTTP/1.1 (and 1.0) connection, parsed with nodejs/http-parser. Requests are served one at
/// a time: parsing stops when a request is complete and resumes once its answer has left, so
/// pipelined answers go out in request order and only one answer is ever buffered. Closes on
/// one path (`close`). Loop-confined.
///
/// Bounds: a request must arrive whole within `requestArrivalTimeoutSeconds` of its first byte
/// (else 408, then close), and a connection with no complete request for `idleTimeoutSeconds`
/// closes: both are deadlines, which bytes trickling in do not extend. A request's head and body
/// bytes are reserved from the connection's and the worker's budgets before they are buffered
/// (a declared `content-length` up front, a chunked body as it grows); a request that does not
/// fit is answered 503 and the connection closes.
final class HTTP1Connection: ServerConnection {
    private let context: ServerContext
    /// Told when this connection closes; weak because the server may be gone first.
    private weak var server: HTTPServer?
    private let socket: ConnectionSocket
    /// http-parser's state: plain memory, no C resources. Lent to C only for the duration of
    /// each http_parser_execute; `data` names this connection for the callbacks.
    private var parser = http_parser()
    /// The request being parsed.
    private var request = PartialRequest()
    /// Set by a callback that paused the parser: why parsing stopped.
    private var stop: ParseStop?
    /// The request with the application, or whose answer is still being written: parsing waits.
    private var exchange: HTTP1Exchange?
    /// True while http-parser runs our callbacks: the connection must not be freed then.
    private var inParser = false
    /// Set by `goAway`: the answer in flight is the last one.
    private var draining = false
    private(set) var isClosed = false
    /// Fires `requestArrivalTimeoutSeconds` after a request's first byte, unless it is complete.
    private let arrivalDeadline: Timer
    /// Fires `idleTimeoutSeconds` after the connection last became idle (set up, or an answer
    /// sent), unless a complete request came meanwhile.
    private let idleDeadline: Timer
    /// Request bytes this connection holds in `context.requestBytes` (the request being parsed or
    /// with the application), given back when it is answered or the connection closes.
    private var reservedBytes = 0
    /// The request being parsed or answered counts as an open stream in the server's stats.
    private var countsAsStream = false

    var loop: Loop { context.loop }
    private var handler: HTTPHandler { context.handler }
    /// A stored copy of the server's configuration (see HTTP2Connection.limits).
    private let limits: HTTPServerConfiguration

    /// Unparsed input held while a request is with the application or its answer is going out
    /// (pipelined requests, or a body sent in a burst): past this, reading pauses until the
    /// exchange is over and parsing has taken what is buffered.
    private static let pipelinedInputLimit = 64 * 1024

    private enum ParseStop {
        case complete
        case rejected(HTTPLimitViolation)
    }

    /// A request as the parser delivers it, in pieces (any piece may arrive split over reads).
    private struct PartialRequest {
        /// Set by the parser's first byte of a request: from then on the connection is not idle
        /// (a drain lets the request finish). A fresh value again once it is dispatched or rejected.
        var hasBegun = false
        var target: [UInt8] = []
        var method = ""
        var path = ""
        var query: String?
        var headers = HTTPHeaders()
        var fieldName: [UInt8] = []
        var fieldValue: [UInt8] = []
        var inValue = false
        /// Counted as HTTP/2 counts its header list: name + value + 32 per field, the request
        /// target counting as the `:path` field.
        var headerListBytes = 0
        /// Header fields after this are a chunked body's trailers, which are ignored.
        var headersDone = false
        var keepAlive = true
        var isHTTP10 = false
        var bodyLimit = 0
        var body: [UInt8] = []
        /// Body bytes already reserved from the budgets (the declared length, or what came so far).
        var bodyReserved = 0
        var headersArrivedAt: Int64 = 0
    }

    /// The server attaches the socket once this exists, then calls `readable` for the bytes
    /// already buffered.
    init(socket: ConnectionSocket, context: ServerContext, server: HTTPServer) throws {
        self.context = context
        limits = context.configuration
        self.server = server
        self.socket = socket
        arrivalDeadline = try Timer(loop: context.loop)
        idleDeadline = try Timer(loop: context.loop)
        http_parser_init(&parser, HTTP_REQUEST)
        parser.data = Unmanaged.passUnretained(self).toOpaque()
        armIdleDeadline()
    }

    deinit {
        // Every path that gives up a connection marks it closed first.
        precondition(isClosed, "HTTP1Connection freed without close()")
    }

    // MARK: socket events

    func readable() {
        if exchange == nil { parseInput() }
        boundUnparsedInput()
    }

    func writable() {
        // The answer has left: the next pipelined request may be parsed.
        guard let exchange, exchange.hasResponded, socket.outputLength == 0 else { return }
        self.exchange = nil
        armIdleDeadline()
        parseInput()
        boundUnparsedInput()
    }

    /// Pauses reading while an exchange is in progress and more than `pipelinedInputLimit` bytes
    /// wait unparsed; reads again otherwise. After an exchange this resumes reading once parsing
    /// has taken what was buffered (those bytes are never announced again, so parseInput ran on
    /// them first).
    private func boundUnparsedInput() {
        guard !isClosed, let input = socket.input else { return }
        let pause = exchange != nil && evbuffer_get_length(input) > Self.pipelinedInputLimit
        guard pause ? socket.pauseInput() : socket.resumeInput() else { return close() }
    }

    var isAwaitingHandler: Bool { exchange.map { !$0.hasResponded } ?? false }

    /// The one teardown path: cancels the request in flight, closes the socket.
    func close() {
        guard !isClosed else { return }
        if inParser {
            // Never free the connection from inside a parser callback: finish after it returns.
            loop.nextTick { self.close() }
            return
        }
        isClosed = true
        arrivalDeadline.cancel()
        idleDeadline.cancel()
        let inFlight = exchange
        exchange = nil
        inFlight?.cancel()
        endRequest()
        socket.close()
        server?.connectionClosed(self)
    }

    /// HTTP/1 has no GOAWAY: an idle connection closes now, a busy one after its answer, which
    /// says `connection: close` (`draining`). A request still arriving counts as busy, as a
    /// started HTTP/2 stream does: it is answered when complete, within the idle timeout.
    func goAway() {
        guard !isClosed else { return }
        draining = true
        if let exchange {
            // Already answered without the close notice: this answer is the last anyway.
            if exchange.hasResponded { socket.closeAfterWriting() }
        } else if !request.hasBegun {
            close()
        }
    }

    // MARK: parsing

    /// Parses buffered input until a request is complete or breaks a limit (then acts on it and
    /// stops), or the input runs out (then waits for more).
    private func parseInput() {
        guard !isClosed, !socket.isLingering, let input = socket.input else { return }
        let length = evbuffer_get_length(input)
        guard length > 0, let data = evbuffer_pullup(input, -1) else { return }
        inParser = true
        let consumed = withUnsafePointer(to: HTTPParserCallbacks.settings) { settings in
            data.withMemoryRebound(to: CChar.self, capacity: length) { http_parser_execute(&parser, settings, $0, length) }
        }
        inParser = false
        let error = http_errno(parser.http_errno)
        if error == HPE_PAUSED { http_parser_pause(&parser, 0) }
        guard evbuffer_drain(input, consumed) == 0 else { return close() }
        guard error == HPE_OK || error == HPE_PAUSED else { return badRequest(error) }
        let reason = stop
        stop = nil
        switch reason {
        case .complete: dispatch()
        case .rejected(let violation): reject(violation)
        case nil: break
        }
    }

    func messageBegin() {
        request = PartialRequest()
        request.hasBegun = true
        countsAsStream = true
        context.configuration.stats?.streamOpened()
        // From its first byte a request has the arrival bound; the idle bound is for the time
        // between requests (re-armed once this one is answered).
        idleDeadline.cancel()
        let seconds = limits.requestArrivalTimeoutSeconds
        do {
            try arrivalDeadline.arm(milliseconds: seconds * 1000) { [weak self] in self?.missedArrivalDeadline(seconds) }
        } catch {
            close()
        }
    }

    // MARK: time bounds

    private func armIdleDeadline() {
        do {
            try idleDeadline.arm(milliseconds: limits.idleTimeoutSeconds * 1000) { [weak self] in self?.missedIdleDeadline() }
        } catch {
            close()
        }
    }

    /// The request is still arriving (slowloris, or a stalled body): 408, then close.
    private func missedArrivalDeadline(_ seconds: Int) {
        guard !isClosed, exchange == nil, request.hasBegun else { return }
        context.logger.debug("HTTP/1.x request not complete in time", metadata: ["seconds": "\(seconds)", "peer": "\(socket.peer)"])
        if !request.headersDone { withUnsafeMutablePointer(to: &parser) { takeRequestLine($0) } }
        reject(.requestTimeout(seconds: seconds))
    }

    /// No request began for the idle timeout, whatever trickled in (blank lines the parser skips,
    /// a byte a second of nothing): close. A request that began has the arrival bound instead.
    private func missedIdleDeadline() {
        guard !isClosed, exchange == nil, !request.hasBegun else { return }
        close()
    }

    // MARK: request bytes

    /// Takes `count` request bytes from the connection's and the worker's budgets; false (and
    /// nothing taken) when either has no room.
    private func reserveRequestBytes(_ count: Int, for use: RequestByteBudget.Use) -> Bool {
        guard count <= limits.maxBufferedRequestBytesPerConnection - reservedBytes, context.requestBytes.reserve(count, for: use) else { return false }
        reservedBytes += count
        return true
    }

    /// The request was answered or dropped: its bytes go back to the budgets, its stream closes.
    private func endRequest() {
        context.requestBytes.release(reservedBytes)
        reservedBytes = 0
        if countsAsStream {
            countsAsStream = false
            context.configuration.stats?.streamClosed()
        }
    }

    // MARK: parser callbacks

    func target(_ bytes: UnsafeBufferPointer<UInt8>, _ parser: UnsafeMutablePointer<http_parser>) {
        if request.target.isEmpty { request.headerListBytes += ":path".utf8.count + 32 }
        guard countHeaderBytes(bytes.count, parser) else { return }
        request.target.append(contentsOf: bytes)
    }

    func headerName(_ bytes: UnsafeBufferPointer<UInt8>, _ parser: UnsafeMutablePointer<http_parser>) {
        guard !request.headersDone else { return }
        if request.inValue { commitField() }
        if request.fieldName.isEmpty { request.headerListBytes += 32 }
        guard countHeaderBytes(bytes.count, parser) else { return }
        request.fieldName.append(contentsOf: bytes)
    }

    func headerValue(_ bytes: UnsafeBufferPointer<UInt8>, _ parser: UnsafeMutablePointer<http_parser>) {
        guard !request.headersDone else { return }
        request.inValue = true
        guard countHeaderBytes(bytes.count, parser) else { return }
        request.fieldValue.append(contentsOf: bytes)
    }

    func headersComplete(_ parser: UnsafeMutablePointer<http_parser>) {
        if request.inValue { commitField() }
        request.headersDone = true
        takeRequestLine(parser)
        request.keepAlive = http_should_keep_alive(parser) != 0
        request.isHTTP10 = parser.pointee.http_major == 1 && parser.pointee.http_minor == 0
        request.headersArrivedAt = loop.monotonicMilliseconds
        request.bodyLimit = handler.requestBodyLimit(method: request.method, path: request.path)
        let flags = parser.pointee.flags
        let declared = flags & F_CONTENTLENGTH.rawValue != 0 ? parser.pointee.content_length : 0
        if declared > UInt64(max(request.bodyLimit, 0)) {
            return pause(parser, .rejected(.bodyTooLarge(limit: request.bodyLimit)))
        }
        // Within the body limit, so it fits an Int. Reserved before any of it is buffered, so a
        // declared body is refused before it arrives, and its buffer is allocated once.
        if declared > 0 {
            guard reserveRequestBytes(Int(declared), for: .body) else { return pause(parser, .rejected(.serverBusy)) }
            request.bodyReserved = Int(declared)
            request.body.reserveCapacity(Int(declared))
        }
        // The client waits for this before sending a body it declared; a declared body over the
        // limit was answered with the limit error above instead.
        let bodyFollows = declared > 0 || flags & F_CHUNKED.rawValue != 0
        if bodyFollows, !request.isHTTP10, request.headers.first(named: "expect")?.lowercased() == "100-continue" {
            let interim = "HTTP/1.1 100 Continue\r\n\r\n"
            var written = false
            interim.utf8.withContiguousStorageIfAvailable { written = socket.write($0.baseAddress!, $0.count) }
            if !written { close() }
        }
    }

    func bodyChunk(_ bytes: UnsafeBufferPointer<UInt8>, _ parser: UnsafeMutablePointer<http_parser>) {
        // Chunked bodies declare no length up front: they are checked as they arrive.
        guard request.body.count + bytes.count <= request.bodyLimit else {
            return pause(parser, .rejected(.bodyTooLarge(limit: request.bodyLimit)))
        }
        let unreserved = request.body.count + bytes.count - request.bodyReserved
        if unreserved > 0 {
            guard reserveRequestBytes(unreserved, for: .body) else { return pause(parser, .rejected(.serverBusy)) }
            request.bodyReserved += unreserved
        }
        request.body.append(contentsOf: bytes)
    }

    func messageComplete(_ parser: UnsafeMutablePointer<http_parser>) {
        pause(parser, .complete)
    }

    private func pause(_ parser: UnsafeMutablePointer<http_parser>, _ reason: ParseStop) {
        stop = reason
        http_parser_pause(parser, 1)
    }

    /// Sets the method, path and query from the parser and the target bytes so far. The method is
    /// final once the target starts (http-parser reads it up to the space before the target).
    private func takeRequestLine(_ parser: UnsafeMutablePointer<http_parser>) {
        request.method = String(cString: http_method_str(http_method(parser.pointee.method)))
        request.target.withUnsafeBufferPointer { target in
            if let mark = target.firstIndex(of: UInt8(ascii: "?")) {
                request.path = String(decoding: target[..<mark], as: UTF8.self)
                request.query = String(decoding: target[(mark + 1)...], as: UTF8.self)
            } else {
                request.path = String(decoding: target, as: UTF8.self)
            }
        }
        request.target = []
    }

    /// Adds to the header list size; past the limit, stops parsing to answer the limit error,
    /// which the handler chooses by method and path (a HEAD answer carries no body): those are
    /// taken from what has arrived, since headersComplete will not run.
    private func countHeaderBytes(_ count: Int, _ parser: UnsafeMutablePointer<http_parser>) -> Bool {
        request.headerListBytes += count
        let violation: HTTPLimitViolation
        if request.headerListBytes > limits.maxHeaderListBytes {
            violation = .headerListTooLarge(limit: limits.maxHeaderListBytes)
        } else if !reserveRequestBytes(count, for: .headers) {
            violation = .serverBusy
        } else {
            return true
        }
        takeRequestLine(parser)
        pause(parser, .rejected(violation))
        return false
    }

    /// Stores the field collected so far: the name lowercased (handlers look headers up by
    /// lowercase name, as HTTP/2 delivers them), the value without trailing blanks.
    private func commitField() {
        for index in request.fieldName.indices where (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(request.fieldName[index]) {
            request.fieldName[index] |= 0x20
        }
        while let last = request.fieldValue.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") {
            request.fieldValue.removeLast()
        }
        request.fieldName.withUnsafeBufferPointer { name in
            request.fieldValue.withUnsafeBufferPointer { value in request.headers.append(name: name, value: value) }
        }
        request.fieldName.removeAll(keepingCapacity: true)
        request.fieldValue.removeAll(keepingCapacity: true)
        request.inValue = false
    }

    // MARK: requests and responses

    private func dispatch() {
        arrivalDeadline.cancel()
        idleDeadline.cancel()
        let exchange = HTTP1Exchange(connection: self, isHead: request.method == "HEAD", keepAlive: request.keepAlive,
                                     isHTTP10: request.isHTTP10)
        self.exchange = exchange
        let complete = HTTPRequest(version: .http1_1, method: request.method, path: request.path, query: request.query,
                                   headers: request.headers, body: request.body, peer: socket.peer,
                                   headersArrivedAt: request.headersArrivedAt)
        request = PartialRequest()
        handler.handle(complete, writer: exchange)
    }

    /// A limit broken: the handler's answer, then close (the rest of the request is not read).
    private func reject(_ violation: HTTPLimitViolation) {
        context.configuration.stats?.refused(Self.refusal(violation))
        let answer = handler.limitExceeded(violation, version: .http1_1, method: request.method, path: request.path,
                                           contentType: request.headers.first(named: "content-type"))
        respondAndClose(answer, isHead: request.method == "HEAD")
    }

    /// Malformed input: the parser's own diagnosis, then close (there is no telling where the
    /// next request would start).
    private func badRequest(_ error: http_errno) {
        let name = String(cString: http_errno_name(error))
        let description = String(cString: http_errno_description(error))
        context.logger.debug("malformed HTTP/1.x request", metadata: ["error": "\(name)"])
        context.configuration.stats?.refused(.malformed)
        respondAndClose(HTTPResponse(status: 400, headers: [("content-type", "text/plain; charset=utf-8")],
                                     body: Array("bad request: \(name): \(description)\n".utf8)), isHead: false)
    }

    private static func refusal(_ violation: HTTPLimitViolation) -> HTTPServerStats.Refusal {
        switch violation {
        case .headerListTooLarge: return .headerTooLarge
        case .bodyTooLarge: return .bodyTooLarge
        case .serverBusy: return .requestBytes
        case .requestTimeout: return .requestTimeout
        }
    }

    private func respondAndClose(_ response: HTTPResponse, isHead: Bool) {
        arrivalDeadline.cancel()
        idleDeadline.cancel()
        let exchange = HTTP1Exchange(connection: self, isHead: isHead, keepAlive: false, isHTTP10: request.isHTTP10)
        self.exchange = exchange
        request = PartialRequest()
        exchange.respond(response)
    }

    /// Writes `response` for the exchange in flight (HTTP1Exchange.respond checks it is open).
    /// Framing is always `content-length`; trailers have no place in an HTTP/1.1 answer here.
    func send(_ response: HTTPResponse, for exchange: HTTP1Exchange) {
        guard !isClosed, exchange === self.exchange else { return }
        // Answered: the request's bytes are no longer held on its behalf.
        endRequest()
        let closing = !exchange.keepAlive || draining
        var head = "HTTP/1.1 \(response.status) \(String(cString: http_status_str(http_status(UInt32(clamping: response.status)))))\r\n"
        for field in response.headers {
            head += field.name
            head += ": "
            head += field.value
            head += "\r\n"
        }
        // RFC 9110 §8.6: no content-length on 1xx, 204 and 304 answers.
        if response.status >= 200, response.status != 204, response.status != 304 {
            head += "content-length: \(response.body.count)\r\n"
        }
        if closing {
            head += "connection: close\r\n"
        } else if exchange.isHTTP10 {
            head += "connection: keep-alive\r\n"
        }
        head += "\r\n"
        var written = head.utf8.withContiguousStorageIfAvailable { socket.write($0.baseAddress!, $0.count) } ?? false
        if written, !exchange.isHead, !response.body.isEmpty {
            written = response.body.withUnsafeBytes { socket.write($0.baseAddress!, $0.count) }
        }
        guard written else { return close() }
        // Otherwise writable() moves on to the next request once this answer has left.
        if closing { socket.closeAfterWriting() }
    }
}

/// The response writer of one HTTP/1.1 request. Holds its connection strongly; the connection
/// drops it once the answer has left or when it closes, which ends the cycle. Loop-confined.
final class HTTP1Exchange: AnswersOnce {
    private let connection: HTTP1Connection
    /// A HEAD request: the answer's headers (with the body's length) go out without the body.
    let isHead: Bool
    let keepAlive: Bool
    /// HTTP/1.0 keeps the connection only when the answer says `connection: keep-alive`.
    let isHTTP10: Bool
    var once = ResponseOnce()

    init(connection: HTTP1Connection, isHead: Bool, keepAlive: Bool, isHTTP10: Bool) {
        self.connection = connection
        self.isHead = isHead
        self.keepAlive = keepAlive
        self.isHTTP10 = isHTTP10
    }

    func respond(_ response: HTTPResponse) {
        connection.loop.assertInLoop()
        guard once.claim() else { return }
        connection.send(response, for: self)
    }

    func cancel() {
        once.cancel()?()
    }
}
