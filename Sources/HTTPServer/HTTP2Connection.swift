internal import CLibevent
internal import CNghttp2
import EventLoop
import Glibc
import Logging

/// One HTTP/2 connection: owns its `nghttp2_session` and frees it on one path (`close`), which
/// also closes its socket. Structure follows nghttp2's examples/libevent-server.c (v1.52.0).
///
/// Bounds what a peer can make it hold (see HTTPServerConfiguration): request bytes buffered
/// before their answers (per connection and, through `context.requestBytes`, per worker),
/// streams still uploading, answer bytes pinned by a peer that does not read, the time a request
/// may take to arrive, and the time the connection may go without a request or an answer moving.
/// Time bounds share one loop timer, armed for the nearest deadline: the bufferevent's read
/// timeout alone would let any trickled byte (a PING, a WINDOW_UPDATE) keep the connection.
/// Loop-confined.
final class HTTP2Connection: ServerConnection {
    private let context: ServerContext
    /// Told when this connection closes; weak because the server may be gone first.
    private weak var server: HTTPServer?
    private let socket: ConnectionSocket
    private var session: OpaquePointer?
    /// The open streams, unordered (each knows its `tableIndex`). Found by id through nghttp2's
    /// own stream table (the stream's user data), so a request costs no hashing here.
    private var streams: [HTTP2Stream] = []
    /// The stream the last callbacks were about: a request's callbacks (one per header field,
    /// then its DATA) arrive in a run, so most lookups end here.
    private var currentStream: HTTP2Stream?
    private var glitches = 0
    /// True while nghttp2 is inside mem_recv/send: it must not be re-entered or freed then.
    private var inSession = false
    private var sendWanted = false
    /// Queued with the server for a flush at the end of this loop pass (`flushSoon`).
    var flushScheduled = false
    /// The last `send` refused bytes because the output reached its cap (see `flush`).
    private var blockedByOutputCap = false
    private(set) var isClosed = false
    /// `close()` was called inside nghttp2 and runs once it returns: answer nothing meanwhile.
    private var closeScheduled = false
    private let stats: HTTPServerStats?

    /// The clock, read once per batch of input: when the streams in it started or completed.
    private var receivedAt: Int64
    /// When a request last arrived whole or an answer last moved: idleness counts from here.
    private var lastProgressAt: Int64
    /// When answer bytes last moved to the socket (or, with none pending, when the first of those
    /// now pending was queued): how long a reader has left answers lying.
    private var answersMovedAt: Int64 = 0
    private let timer: Timer
    /// When `timer` fires (monotonic ms); `.max` until the first `readable()` (it is re-armed on
    /// every firing until the connection closes).
    private var timerDue = Int64.max
    /// Request bytes this connection's streams hold (reserved from the worker's budget too).
    private var bufferedRequestBytes = 0
    /// Streams begun but neither handed to the application nor rejected: each has a deadline.
    private var arrivingStreams = 0
    private var streamsReceivingBody = 0
    /// Answer bytes submitted and still held by nghttp2 (the peer's window is closed).
    private var pendingResponseBytes = 0
    private var drain = DrainPhase.serving
    private var finalGoAwayDue = Int64.max

    private enum DrainPhase {
        case serving
        /// Shutdown notice and PING sent: streams the peer opened before it saw the notice may
        /// still arrive; the PING's acknowledgement (or a timer) says when they are all in.
        case noticeSent
        case finalGoAwaySent
    }

    var loop: Loop { context.loop }
    var logger: Logger { context.logger }
    var handler: HTTPHandler { context.handler }
    /// The server's configuration, held here: read for every header field and frame, a stored
    /// copy costs no retain and release of the context's.
    let limits: HTTPServerConfiguration

    /// Sets up HTTP/2 on a socket whose peer is known to speak it (the server attaches the socket
    /// once this exists). Throws before the object exists, so no half-built one is left for
    /// `deinit` to judge; from then on, failures go through `close()`, the one teardown path.
    init(socket: ConnectionSocket, context: ServerContext, server: HTTPServer) throws {
        let timer = try Timer(loop: context.loop)
        var session: OpaquePointer?
        let rv = nghttp2_session_server_new2(&session, context.callbacks.pointer, nil, context.callbacks.options)
        guard rv == 0, let session else { throw HTTPServerError("nghttp2_session_server_new2", code: Int(rv)) }
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: context.configuration.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(clamping: context.configuration.maxHeaderListBytes)),
        ]
        let settingsRV = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard settingsRV == 0 else {
            nghttp2_session_del(session)
            throw HTTPServerError("nghttp2_submit_settings", code: Int(settingsRV))
        }
        self.context = context
        limits = context.configuration
        self.server = server
        self.socket = socket
        self.session = session
        self.timer = timer
        stats = context.configuration.stats
        receivedAt = context.loop.monotonicMilliseconds
        lastProgressAt = receivedAt
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        // Every path that gives up a connection marks it closed first.
        precondition(isClosed, "HTTP2Connection freed without close()")
    }

    private var idleMilliseconds: Int64 { Int64(max(1, limits.idleTimeoutSeconds)) * 1000 }
    private var arrivalMilliseconds: Int64 { Int64(max(1, limits.requestArrivalTimeoutSeconds)) * 1000 }

    // MARK: socket events

    func readable() {
        guard let session, let input = socket.input else { return }
        // First call (the server makes it once the connection is registered): from now on a
        // failure to arm the timer can go through close().
        if timerDue == .max { armTimer(at: lastProgressAt + idleMilliseconds) }
        let length = evbuffer_get_length(input)
        // Handed over with nothing buffered (as ALPN will): our SETTINGS still go out now.
        guard length > 0, let data = evbuffer_pullup(input, -1) else { return flush() }
        receivedAt = loop.monotonicMilliseconds
        inSession = true
        let consumed = nghttp2_session_mem_recv(session, data, length)
        inSession = false
        guard consumed >= 0, evbuffer_drain(input, Int(consumed)) == 0 else {
            let code = Int32(clamping: consumed)
            let abusive = code == NGHTTP2_ERR_FLOODED.rawValue || code == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue
            stats?.refused(abusive ? .abuse : .malformed)
            logger.debug("closing HTTP/2 connection", metadata: ["reason": "\(String(cString: nghttp2_strerror(code)))"])
            close()
            return
        }
        flush()
    }

    func writable() {
        if socket.outputLength == 0 { flush() }
    }

    /// Some complete request is with the application and not yet answered.
    var isAwaitingHandler: Bool {
        streams.contains { $0.dispatched && !$0.hasResponded && !$0.isCancelled }
    }

    /// Lets nghttp2 write what it has queued; once neither side has anything left to say, the
    /// socket closes after writing.
    func flush() {
        guard let session, !isClosed else { return }
        if inSession {
            sendWanted = true
            return
        }
        // Frames are staged and leave in one write per pass. Another pass follows when nghttp2's
        // own callbacks queued an answer meanwhile, or when the output cap stopped this one and
        // the kernel took everything at once (nothing else would call back; with bytes left in
        // the output buffer, `writable` resumes once they are gone).
        var rv: Int32
        repeat {
            sendWanted = false
            blockedByOutputCap = false
            inSession = true
            rv = nghttp2_session_send(session)
            inSession = false
            guard socket.flushStaged() else { return close() }
        } while rv == 0 && !closeScheduled && (sendWanted || (blockedByOutputCap && socket.outputLength == 0))
        guard rv == 0 else {
            close()
            return
        }
        // Done both ways (GOAWAY sent and no stream left, or the session terminated): the socket
        // writes what is queued, then half-closes and waits for the peer's EOF. Closing now could
        // meet input not yet read, and the kernel's reset would destroy our last frames. EOF or
        // the linger limit then comes back through close(), which frees the session.
        if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0 {
            socket.closeAfterWriting()
        }
    }

    /// The one teardown path: cancels every open stream's work, gives back what the streams
    /// hold, frees nghttp2, closes the socket.
    func close() {
        guard !isClosed else { return }
        if inSession {
            // Never free the session from inside its own callbacks: finish after it returns.
            sendWanted = false
            if !closeScheduled { loop.nextTick { self.close() } }
            closeScheduled = true
            return
        }
        isClosed = true
        timer.cancel()
        currentStream = nil
        let open = streams
        streams.removeAll()
        for stream in open { forget(stream) }
        for stream in open { stream.cancel() }
        if let session { nghttp2_session_del(session) }
        session = nil
        socket.close()
        server?.connectionClosed(self)
    }

    /// Two-phase graceful stop (RFC 9113 §6.8, as nghttp2 and Hummingbird do it): a GOAWAY with
    /// the largest stream id tells the peer to open no more streams, then a PING; the final
    /// GOAWAY, naming the last stream really received, follows the PING's acknowledgement or
    /// `shutdownNoticeMilliseconds`, whichever comes first. Streams in flight finish; once none
    /// is left after the final GOAWAY, the connection closes (see `flush`).
    func goAway() {
        guard let session, !isClosed, drain == .serving else { return }
        drain = .noticeSent
        guard nghttp2_submit_shutdown_notice(session) == 0 else { return sendFinalGoAway() }
        finalGoAwayDue = loop.monotonicMilliseconds + Int64(max(0, limits.shutdownNoticeMilliseconds))
        armTimer(at: finalGoAwayDue)
        flush()
        // The PING only proves the notice arrived if it follows it on the wire, and nghttp2 sends
        // PINGs ahead of queued GOAWAYs: so only once the notice is out. A peer whose output is
        // backed up waits for the timer instead.
        guard !isClosed, let session = self.session, nghttp2_session_get_outbound_queue_size(session) == 0,
              nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil) == 0 else { return }
        flush()
    }

    private func sendFinalGoAway() {
        guard let session, !isClosed, drain != .finalGoAwaySent else { return }
        drain = .finalGoAwaySent
        let last = nghttp2_session_get_last_proc_stream_id(session)
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
        flush()
    }

    // MARK: deadlines

    private var pendingAnswerBytesOverCap: Bool {
        pendingResponseBytes + socket.outputLength > limits.maxPendingResponseBytesPerConnection
    }

    private var stallMilliseconds: Int64 { Int64(limits.pendingResponseStallSeconds) * 1000 }

    /// Makes the timer fire by `due` (it may already fire sooner).
    private func armTimer(at due: Int64) {
        guard due < timerDue, !isClosed else { return }
        timerDue = due
        do {
            // Unowned: close() disarms the timer before the server lets go of this connection (and
            // a weak reference would give this hot object a side table).
            try timer.arm(milliseconds: Int(clamping: due - loop.monotonicMilliseconds)) { [unowned self] in deadlineReached() }
        } catch {
            // Without its timer nothing would bound this connection's time.
            logger.error("closing HTTP/2 connection", metadata: ["reason": "\(error)"])
            close()
        }
    }

    /// Whatever deadline woke the timer: the drain's second phase, requests that did not arrive
    /// in time, an idle connection. Then re-arms for the next one.
    private func deadlineReached() {
        timerDue = .max
        guard !isClosed else { return }
        let now = loop.monotonicMilliseconds
        if drain == .noticeSent, now >= finalGoAwayDue { sendFinalGoAway() }
        var next = drain == .noticeSent ? finalGoAwayDue : Int64.max
        if arrivingStreams > 0 {
            for stream in streams where !stream.dispatched {
                let deadline = stream.startedAt + arrivalMilliseconds
                guard deadline <= now else {
                    next = min(next, deadline)
                    continue
                }
                stats?.refused(.requestTimeout)
                // A header block cut short blocks the whole connection (only its CONTINUATION
                // may follow), so the connection goes; a slow body costs only its stream.
                guard stream.headersArrivedAt != 0 else {
                    logger.debug("closing HTTP/2 connection", metadata: ["reason": "request headers did not arrive in time", "peer": "\(socket.peer)"])
                    return close()
                }
                reject(stream, .requestTimeout(seconds: limits.requestArrivalTimeoutSeconds))
            }
            if isClosed { return }
        }
        // A peer that asks for answers and does not take them would pin them all: past the cap,
        // answers that have not moved for the stall time close the connection. A reader that
        // keeps taking them (many large answers through small windows) is never cut off.
        if pendingAnswerBytesOverCap {
            let stallDue = answersMovedAt + stallMilliseconds
            guard now < stallDue else {
                logger.info("closing HTTP/2 connection: answer bytes pending to a peer that does not read them",
                            metadata: ["peer": "\(socket.peer)", "pendingBytes": "\(pendingResponseBytes + socket.outputLength)"])
                stats?.refused(.pendingResponse)
                return close()
            }
            next = min(next, stallDue)
        }
        // Idle: no request arrived and no answer moved for the whole timeout, and the
        // application holds no request. PINGs, SETTINGS and window updates are not progress,
        // and answers pinned by a closed window do not count as being written.
        // A request still arriving has the arrival bound instead.
        if isAwaitingHandler || arrivingStreams > 0 {
            lastProgressAt = now
        } else if now - lastProgressAt >= idleMilliseconds {
            logger.debug("closing idle HTTP/2 connection", metadata: ["peer": "\(socket.peer)", "pendingResponseBytes": "\(pendingResponseBytes)"])
            return close()
        }
        armTimer(at: min(next, lastProgressAt + idleMilliseconds))
        flush()
    }

    // MARK: nghttp2 callbacks (called from Nghttp2Callbacks)

    func send(_ data: UnsafePointer<UInt8>, _ length: Int) -> Int {
        guard hasOutputRoom else { return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue) }
        socket.stage(data, length)
        return length
    }

    /// A DATA frame whose payload nghttp2 left with the stream (NGHTTP2_DATA_FLAG_NO_COPY): its
    /// header and the payload are staged straight from the answer's bytes, copied once.
    func sendData(header: UnsafePointer<UInt8>, length: Int, of stream: HTTP2Stream) -> Int32 {
        guard hasOutputRoom else { return NGHTTP2_ERR_WOULDBLOCK.rawValue }
        socket.stage(header, 9)
        stream.stageBody(length, to: socket)
        return 0
    }

    /// Below the output cap; when not, nghttp2 is told to wait (NGHTTP2_ERR_WOULDBLOCK).
    private var hasOutputRoom: Bool {
        guard socket.outputLength < limits.outputBufferLimit else {
            blockedByOutputCap = true
            return false
        }
        return true
    }

    func beginHeaders(streamID: Int32) {
        guard let session else { return }
        let stream = HTTP2Stream(connection: self, streamID: streamID)
        stream.startedAt = receivedAt
        // nghttp2 holds the stream until it closes it (on_stream_close, where the table lets go).
        guard nghttp2_session_set_stream_user_data(session, streamID, Unmanaged.passUnretained(stream).toOpaque()) == 0 else { return }
        stream.tableIndex = streams.count
        streams.append(stream)
        currentStream = stream
        arrivingStreams += 1
        stats?.streamOpened()
        armTimer(at: receivedAt + arrivalMilliseconds)
    }

    func header(streamID: Int32, name: UnsafePointer<UInt8>, nameLength: Int, value: UnsafePointer<UInt8>, valueLength: Int) {
        guard let stream = stream(streamID), !stream.headersTooLarge, !stream.headersRefused, !stream.dispatched else { return }
        let fieldBytes = nameLength + valueLength + 32
        stream.headerListBytes += fieldBytes
        if stream.headerListBytes > limits.maxHeaderListBytes {
            stream.headersTooLarge = true
            dropHeaders(of: stream)
            return
        }
        guard reserveRequestBytes(fieldBytes, for: stream, use: .headers) else {
            stream.headersRefused = true
            dropHeaders(of: stream)
            return
        }
        let valueBytes = UnsafeBufferPointer(start: value, count: valueLength)
        guard name.pointee == UInt8(ascii: ":") else {
            stream.headers.append(name: UnsafeBufferPointer(start: name, count: nameLength), value: valueBytes)
            return
        }
        // Pseudo-headers: nghttp2 has validated them; only :method and :path matter here.
        if nameLength == 7, memcmp(name, ":method", 7) == 0 {
            stream.method = String(decoding: valueBytes, as: UTF8.self)
            stream.isHead = valueLength == 4 && memcmp(value, "HEAD", 4) == 0
        } else if nameLength == 5, memcmp(name, ":path", 5) == 0 {
            if let mark = valueBytes.firstIndex(of: UInt8(ascii: "?")) {
                stream.path = String(decoding: valueBytes[..<mark], as: UTF8.self)
                stream.query = String(decoding: valueBytes[(mark + 1)...], as: UTF8.self)
            } else {
                stream.path = String(decoding: valueBytes, as: UTF8.self)
            }
        }
    }

    func headersComplete(streamID: Int32, endStream: Bool) {
        guard let stream = stream(streamID), !stream.dispatched else { return }
        stream.headersArrivedAt = receivedAt
        if stream.headersTooLarge {
            stats?.refused(.headerTooLarge)
            return reject(stream, .headerListTooLarge(limit: limits.maxHeaderListBytes))
        }
        if stream.headersRefused { return refuse(stream, .requestBytes) }
        if endStream { return dispatch(stream) }

        // A body follows: refuse what cannot be taken before any of it is buffered.
        stream.bodyLimit = handler.requestBodyLimit(method: stream.method, path: stream.path)
        let declared = stream.headers.first(named: "content-length").flatMap { Int($0) }
        if let declared, declared > stream.bodyLimit {
            stats?.refused(.bodyTooLarge)
            return reject(stream, .bodyTooLarge(limit: stream.bodyLimit))
        }
        guard streamsReceivingBody < limits.maxStreamsReceivingBodyPerConnection else { return refuse(stream, .uploadStreams) }
        if let declared, declared > 0 {
            guard reserveRequestBytes(declared, for: stream, use: .body) else {
                stats?.refused(.requestBytes)
                return reject(stream, .serverBusy)
            }
            stream.reservedBodyBytes = declared
            stream.body.reserveCapacity(declared)
        }
        stream.isReceivingBody = true
        streamsReceivingBody += 1
    }

    func dataChunk(streamID: Int32, data: UnsafePointer<UInt8>, length: Int) {
        guard let stream = stream(streamID), !stream.dispatched else { return }
        let total = stream.body.count + length
        guard total <= stream.bodyLimit else {
            stats?.refused(.bodyTooLarge)
            return reject(stream, .bodyTooLarge(limit: stream.bodyLimit))
        }
        if total > stream.reservedBodyBytes {
            guard reserveRequestBytes(total - stream.reservedBodyBytes, for: stream, use: .body) else {
                stats?.refused(.requestBytes)
                return reject(stream, .serverBusy)
            }
            stream.reservedBodyBytes = total
        }
        stream.body.append(contentsOf: UnsafeBufferPointer(start: data, count: length))
    }

    func dataComplete(streamID: Int32) {
        guard let stream = stream(streamID), !stream.dispatched else { return }
        dispatch(stream)
    }

    func streamClosed(streamID: Int32) {
        guard let stream = stream(streamID) else { return }
        currentStream = nil
        if let session { nghttp2_session_set_stream_user_data(session, streamID, nil) }
        // Swap-remove: the last stream takes the closed one's place.
        let last = streams.removeLast()
        if last !== stream {
            streams[stream.tableIndex] = last
            last.tableIndex = stream.tableIndex
        }
        forget(stream)
        stream.cancel()
    }

    /// The drain's PING came back: every stream the peer opened before it saw the shutdown
    /// notice has arrived.
    func pingAcknowledged() {
        if drain == .noticeSent { sendFinalGoAway() }
    }

    /// Invalid frames: past the limit the peer is misbehaving, not unlucky. Terminating makes
    /// nghttp2 ignore further input; the next flush sends GOAWAY and then closes. (Resets are
    /// left to nghttp2's own token-bucket limit, so healthy clients that cancel are not counted.)
    func glitch() {
        glitches += 1
        guard glitches == limits.maxGlitchesPerConnection + 1, let session else { return }
        logger.notice("HTTP/2 peer exceeded the invalid-frame limit; sending GOAWAY")
        stats?.refused(.abuse)
        nghttp2_session_terminate_session(session, UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
    }

    /// Response body bytes went to nghttp2 (the peer's window let them out): the answer moves.
    func responseBytesTaken(_ count: Int) {
        guard count > 0 else { return }
        pendingResponseBytes -= count
        lastProgressAt = loop.monotonicMilliseconds
        answersMovedAt = lastProgressAt
    }

    // MARK: requests and responses

    private func stream(_ id: Int32) -> HTTP2Stream? {
        if let current = currentStream, current.streamID == id { return current }
        guard let session, let found = nghttp2_session_get_stream_user_data(session, id) else { return nil }
        currentStream = Unmanaged<HTTP2Stream>.fromOpaque(found).takeUnretainedValue()
        return currentStream
    }

    /// Takes `bytes` for `stream` from the connection's and the worker's request budgets; false,
    /// with nothing taken, when either is spent.
    private func reserveRequestBytes(_ bytes: Int, for stream: HTTP2Stream, use: RequestByteBudget.Use) -> Bool {
        guard bytes <= limits.maxBufferedRequestBytesPerConnection - bufferedRequestBytes, context.requestBytes.reserve(bytes, for: use) else {
            return false
        }
        bufferedRequestBytes += bytes
        stream.reservedRequestBytes += bytes
        return true
    }

    private func releaseRequestBytes(of stream: HTTP2Stream) {
        let bytes = stream.reservedRequestBytes
        guard bytes > 0 else { return }
        stream.reservedRequestBytes = 0
        stream.reservedBodyBytes = 0
        bufferedRequestBytes -= bytes
        context.requestBytes.release(bytes)
    }

    private func dropHeaders(of stream: HTTP2Stream) {
        stream.headers.removeAll()
        releaseRequestBytes(of: stream)
    }

    /// The request has arrived whole or was turned away: it no longer has an arrival deadline.
    private func endArrival(_ stream: HTTP2Stream) {
        stream.dispatched = true
        arrivingStreams -= 1
        if stream.isReceivingBody {
            stream.isReceivingBody = false
            streamsReceivingBody -= 1
        }
    }

    /// Gives back everything a closing stream holds, once.
    private func forget(_ stream: HTTP2Stream) {
        if !stream.dispatched { endArrival(stream) }
        releaseRequestBytes(of: stream)
        pendingResponseBytes -= stream.unsentResponseBytes
        stats?.streamClosed()
    }

    private func dispatch(_ stream: HTTP2Stream) {
        endArrival(stream)
        lastProgressAt = receivedAt
        let request = HTTPRequest(version: .http2, method: stream.method, path: stream.path, query: stream.query, headers: stream.headers, body: stream.body,
                                  peer: socket.peer, headersArrivedAt: stream.headersArrivedAt)
        stream.body = []
        stream.headers.removeAll()
        handler.handle(request, writer: stream)
    }

    /// Answers the request with the handler's answer to `violation` instead of handing it over.
    private func reject(_ stream: HTTP2Stream, _ violation: HTTPLimitViolation) {
        endArrival(stream)
        let contentType = stream.headers.first(named: "content-type")
        stream.body = []
        stream.headers.removeAll()
        stream.respond(handler.limitExceeded(violation, version: .http2, method: stream.method, path: stream.path, contentType: contentType))
    }

    /// Resets a stream the connection has no room for (REFUSED_STREAM: the peer may retry it).
    private func refuse(_ stream: HTTP2Stream, _ reason: HTTPServerStats.Refusal) {
        endArrival(stream)
        stats?.refused(reason)
        stream.body = []
        dropHeaders(of: stream)
        guard let session else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.streamID, UInt32(NGHTTP2_REFUSED_STREAM.rawValue))
    }

    /// Only called by an open stream (HTTP2Stream.respond checks), so no lookup is needed.
    func submit(_ response: HTTPResponse, for stream: HTTP2Stream) {
        guard let session, !isClosed, !closeScheduled else { return }
        releaseRequestBytes(of: stream)
        lastProgressAt = loop.monotonicMilliseconds
        let streamID = stream.streamID
        // No content-length before trailers: a client that has its declared bytes may end the
        // exchange there and never read the trailers (libcurl does). HEAD: the length is the one
        // GET would have, and no DATA follows.
        let contentLength = !response.body.isEmpty && response.trailers.isEmpty ? response.body.count : nil
        let withoutData = stream.isHead || (response.body.isEmpty && response.trailers.isEmpty)
        if !withoutData {
            if pendingResponseBytes == 0 { answersMovedAt = lastProgressAt }
            stream.pendingBody = response.body
            stream.pendingOffset = 0
            stream.pendingTrailers = response.trailers
            pendingResponseBytes += response.body.count
        }
        let rv = withHeaderFields(status: response.status, response.headers, contentLength: contentLength) { nva, count -> Int32 in
            if withoutData { return nghttp2_submit_response(session, streamID, nva, count, nil) }
            // The stream rides along as the data source: nghttp2 only reads it while the stream is
            // open, and the stream table keeps it alive until then.
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: Unmanaged.passUnretained(stream).toOpaque()),
                                                 read_callback: context.callbacks.readBody)
            return nghttp2_submit_response(session, streamID, nva, count, &provider)
        }
        if rv != 0 {
            logger.error("nghttp2_submit_response failed", metadata: ["error": "\(String(cString: nghttp2_strerror(rv)))"])
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, UInt32(NGHTTP2_INTERNAL_ERROR.rawValue))
        }
        // Past the cap, the reader has `pendingResponseStallSeconds` to take some of it.
        if pendingAnswerBytesOverCap { armTimer(at: answersMovedAt + stallMilliseconds) }
        flushSoon()
    }

    /// Flushes once at the end of this loop pass rather than per answer: inside nghttp2 the
    /// caller's `flush` does it, and answers completing together elsewhere (replies read from
    /// Redis in one go) leave in one write.
    private func flushSoon() {
        guard !inSession else { return flush() }
        guard !flushScheduled else { return }
        flushScheduled = true
        context.flushSoon(self)
    }

    /// Queues the trailer HEADERS frame that ends `stream` (called from its data source once the
    /// body is out, which nghttp2 allows). False when nghttp2 refused it.
    func submitTrailers(_ trailers: [(name: String, value: String)], for stream: HTTP2Stream) -> Bool {
        guard let session else { return false }
        let rv = withHeaderFields(status: nil, trailers, contentLength: nil) { nva, count in nghttp2_submit_trailer(session, stream.streamID, nva, count) }
        if rv != 0 {
            logger.error("nghttp2_submit_trailer failed", metadata: ["error": "\(String(cString: nghttp2_strerror(rv)))"])
        }
        return rv == 0
    }
}

/// Lays header fields out as an `nghttp2_nv` array in stack scratch space (once per response):
/// `:status` first when given, then `fields`, then `content-length` when given, the numbers
/// written as digits in place. nghttp2 copies them during submit (no NO_COPY flags), so the
/// memory only lives for the call.
private func withHeaderFields<R>(status: Int?, _ fields: [(name: String, value: String)], contentLength: Int?,
                                 _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
    var total = 2 * maxDecimalDigits
    for field in fields { total += field.name.utf8.count + field.value.utf8.count }
    let count = fields.count + (status == nil ? 0 : 1) + (contentLength == nil ? 0 : 1)
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total) { storage in
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(count, 1)) { nva in
            var offset = 0
            var index = 0
            func append(_ name: StaticString, _ number: Int) {
                let value = storage.baseAddress! + offset
                let length = writeDecimal(number, to: value)
                offset += length
                nva[index] = nghttp2_nv(name: UnsafeMutablePointer(mutating: name.utf8Start), value: value, namelen: name.utf8CodeUnitCount,
                                        valuelen: length, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                index += 1
            }
            if let status { append(":status", status) }
            for field in fields {
                let name = storage.baseAddress! + offset
                offset += copyUTF8(field.name, to: name)
                let value = storage.baseAddress! + offset
                let valueLength = copyUTF8(field.value, to: value)
                offset += valueLength
                nva[index] = nghttp2_nv(name: name, value: value, namelen: value - name, valuelen: valueLength,
                                        flags: isUniquePerResponse(field.name) ? UInt8(NGHTTP2_NV_FLAG_NO_INDEX.rawValue) : UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                index += 1
            }
            if let contentLength { append("content-length", contentLength) }
            return body(nva.baseAddress!, count)
        }
    }
}

/// Digits of the largest Int.
private let maxDecimalDigits = 20

/// Writes a non-negative `number` (a status, a length; a negative one as 0) in decimal; the count written.
private func writeDecimal(_ number: Int, to destination: UnsafeMutablePointer<UInt8>) -> Int {
    var digits = 1
    var rest = max(0, number)
    while rest >= 10 {
        rest /= 10
        digits += 1
    }
    rest = max(0, number)
    for position in stride(from: digits - 1, through: 0, by: -1) {
        destination[position] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10)
        rest /= 10
    }
    return digits
}

/// A field whose value differs on every response (a request id): HPACK indexing it would only
/// churn the dynamic table, evicting the fields that do repeat and costing a table search each
/// time (measured: about 3,500 instructions per response), so it is sent as a literal never indexed.
@inline(__always)
private func isUniquePerResponse(_ name: String) -> Bool {
    name.utf8.count == 12 && name == "x-request-id"
}

private func copyUTF8(_ string: String, to destination: UnsafeMutablePointer<UInt8>) -> Int {
    var string = string
    return string.withUTF8 { bytes in
        if let base = bytes.baseAddress { destination.update(from: base, count: bytes.count) }
        return bytes.count
    }
}
