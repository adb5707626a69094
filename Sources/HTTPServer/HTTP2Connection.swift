internal import CLibevent
internal import CNghttp2
import EventLoop
import Glibc
import Logging

/// What every connection of one server shares. Held strongly by each connection, so a stream
/// the application still holds after the server went away never reaches freed memory.
final class ServerContext {
    let loop: Loop
    let configuration: HTTPServerConfiguration
    let handler: HTTPHandler
    let logger: Logger
    let callbacks: Nghttp2Callbacks

    init(loop: Loop, configuration: HTTPServerConfiguration, handler: HTTPHandler, logger: Logger) throws {
        self.loop = loop
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        callbacks = try Nghttp2Callbacks(configuration: configuration)
    }
}

/// One accepted HTTP/2 connection: owns its bufferevent and its `nghttp2_session` and frees both
/// on one path (`close`). Structure follows nghttp2's examples/libevent-server.c (v1.52.0).
/// Loop-confined.
final class HTTP2Connection {
    private let context: ServerContext
    /// Told when this connection closes; weak because the server may be gone first.
    private weak var server: HTTPServer?
    private var bufferEvent: OpaquePointer?
    private var session: OpaquePointer?
    private var streams: [Int32: HTTP2Stream] = [:]
    /// The stream the last callbacks were about: a request's callbacks (one per header field,
    /// then its DATA) arrive in a run, so most lookups end here instead of hashing.
    private var currentStream: HTTP2Stream?
    private var glitches = 0
    /// True while nghttp2 is inside mem_recv/send: it must not be re-entered or freed then.
    private var inSession = false
    private var sendWanted = false
    /// Set once the HTTP/1 refusal is queued: from then on input is discarded, and once the
    /// answer is written the socket is half-closed and closed at the peer's EOF (closing with
    /// unread input would reset the connection and could destroy the answer in flight).
    private var refusedHTTP1 = false
    /// False until the peer's first bytes were read: nothing is sent before that (libevent calls
    /// the write callback once on a fresh socket), so the server preface never precedes our
    /// HTTP/1 refusal.
    private var heardFromPeer = false
    private(set) var isClosed = false

    var loop: Loop { context.loop }
    var logger: Logger { context.logger }
    var handler: HTTPHandler { context.handler }
    var limits: HTTPServerConfiguration { context.configuration }

    /// Sets up a connection on an accepted socket. Every C handle is created before the object
    /// exists, so a failure frees exactly what was made and no half-built object is left for
    /// `deinit` to judge; once it exists, failures go through `close()`, the one teardown path.
    static func accept(fd: Int32, context: ServerContext, server: HTTPServer) throws -> HTTP2Connection {
        guard let bev = bufferevent_socket_new(context.loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)) else {
            Glibc.close(fd)
            throw HTTPServerError("bufferevent_socket_new")
        }
        var nodelay: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &nodelay, socklen_t(MemoryLayout<Int32>.size))
        var session: OpaquePointer?
        let rv = nghttp2_session_server_new2(&session, context.callbacks.pointer, nil, context.callbacks.options)
        guard rv == 0, let session else {
            bufferevent_free(bev)
            throw HTTPServerError("nghttp2_session_server_new2", code: Int(rv))
        }
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: context.configuration.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(clamping: context.configuration.maxHeaderListBytes)),
        ]
        let settingsRV = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard settingsRV == 0 else {
            nghttp2_session_del(session)
            bufferevent_free(bev)
            throw HTTPServerError("nghttp2_submit_settings", code: Int(settingsRV))
        }
        let connection = HTTP2Connection(context: context, server: server, bufferEvent: bev, session: session)
        do {
            try connection.start()
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    private init(context: ServerContext, server: HTTPServer, bufferEvent: OpaquePointer, session: OpaquePointer) {
        self.context = context
        self.server = server
        self.bufferEvent = bufferEvent
        self.session = session
    }

    /// Points the C callbacks at this object and starts reading.
    private func start() throws {
        guard let bev = bufferEvent, let session else { return }
        let me = Unmanaged.passUnretained(self).toOpaque()
        nghttp2_session_set_user_data(session, me)
        bufferevent_setcb(bev, { _, arg in
            guard let arg else { return }
            // Not _withUnsafeGuaranteedRef: readable() may close and release the last reference.
            Unmanaged<HTTP2Connection>.fromOpaque(arg).takeUnretainedValue().readable()
        }, { _, arg in
            guard let arg else { return }
            Unmanaged<HTTP2Connection>.fromOpaque(arg).takeUnretainedValue().writable()
        }, { _, events, arg in
            guard let arg else { return }
            Unmanaged<HTTP2Connection>.fromOpaque(arg).takeUnretainedValue().socketEvent(events)
        }, me)
        // Reading: no input for this long closes an idle connection (see socketEvent). Writing:
        // output the peer has not taken for this long closes it too.
        var idle = timeval(tv_sec: limits.idleTimeoutSeconds, tv_usec: 0)
        var stalled = idle
        guard bufferevent_set_timeouts(bev, &idle, &stalled) == 0 else { throw HTTPServerError("bufferevent_set_timeouts") }
        guard bufferevent_enable(bev, Int16(EV_READ | EV_WRITE)) == 0 else {
            throw HTTPServerError("watching the accepted socket (bufferevent_enable): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        // Every path that gives up a connection marks it closed first.
        precondition(isClosed, "HTTP2Connection freed without close()")
    }

    // MARK: socket events

    private func readable() {
        guard let bev = bufferEvent, let session else { return }
        let input = bufferevent_get_input(bev)
        let length = evbuffer_get_length(input)
        if refusedHTTP1 {
            evbuffer_drain(input, length)
            return
        }
        guard length > 0, let data = evbuffer_pullup(input, -1) else { return }
        // Only letters so far: the client preface ("PRI ") or an HTTP/1 method; wait for the space.
        if !heardFromPeer, Self.isMethodPrefix(data, length) { return }
        inSession = true
        let consumed = nghttp2_session_mem_recv(session, data, length)
        inSession = false
        if consumed == Int(NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue), Self.looksLikeHTTP1(data, length) {
            return refuseHTTP1(bev)
        }
        guard consumed >= 0 else {
            logger.debug("closing HTTP/2 connection", metadata: ["reason": "\(String(cString: nghttp2_strerror(Int32(consumed))))"])
            close()
            return
        }
        heardFromPeer = true
        evbuffer_drain(input, Int(consumed))
        flush()
    }

    private func writable() {
        guard let bev = bufferEvent else { return }
        if evbuffer_get_length(bufferevent_get_output(bev)) > 0 { return }
        if refusedHTTP1 {
            shutdown(bufferevent_getfd(bev), Int32(SHUT_WR))
            var linger = timeval(tv_sec: 2, tv_usec: 0)
            bufferevent_set_timeouts(bev, &linger, nil)
            return
        }
        if heardFromPeer { flush() }
    }

    /// A relay or probe pointed at this port with HTTP/1.1 gets a 505 that says what to do,
    /// instead of a silent close it would have to debug.
    private func refuseHTTP1(_ bev: OpaquePointer) {
        let body = "this port speaks HTTP/2 only: use h2c with prior knowledge (curl --http2-prior-knowledge)\n"
        let response = "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\nconnection: close\r\n"
            + "content-length: \(body.utf8.count)\r\n\r\n" + body
        logger.debug("refused an HTTP/1.x request on the HTTP/2 port")
        var bytes = Array(response.utf8)
        guard bufferevent_write(bev, &bytes, bytes.count) == 0 else { return close() }
        refusedHTTP1 = true
    }

    /// An HTTP/1.x request line starts with an upper-case method and a space.
    private static func looksLikeHTTP1(_ data: UnsafePointer<UInt8>, _ length: Int) -> Bool {
        let letters = leadingCapitals(data, length)
        return letters > 0 && letters < length && data[letters] == UInt8(ascii: " ")
    }

    /// The bytes so far are a few capitals and nothing else (a request line cut short).
    private static func isMethodPrefix(_ data: UnsafePointer<UInt8>, _ length: Int) -> Bool {
        length < maxMethodLength && leadingCapitals(data, length) == length
    }

    private static let maxMethodLength = 16

    private static func leadingCapitals(_ data: UnsafePointer<UInt8>, _ length: Int) -> Int {
        var index = 0
        while index < length, index < maxMethodLength, (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(data[index]) { index += 1 }
        return index
    }

    private func socketEvent(_ events: Int16) {
        if events & Int16(BEV_EVENT_TIMEOUT | BEV_EVENT_READING) == Int16(BEV_EVENT_TIMEOUT | BEV_EVENT_READING),
           events & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR) == 0, let bufferEvent,
           isAwaitingHandler || evbuffer_get_length(bufferevent_get_output(bufferEvent)) > 0 {
            // Quiet input while the application works on a request (a WarmMembers call runs for
            // minutes), or while an answer is still going out, is not idleness: keep reading
            // (libevent stopped when the timeout fired). A peer that stops taking our output
            // meets the write timeout instead.
            bufferevent_enable(bufferEvent, Int16(EV_READ))
            return
        }
        if events & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 { close() }
    }

    /// Some complete request is with the application and not yet answered.
    private var isAwaitingHandler: Bool {
        streams.values.contains { $0.dispatched && !$0.hasResponded && !$0.isCancelled }
    }

    /// Lets nghttp2 write what it has queued; closes once neither side has anything left to say.
    func flush() {
        guard let session, !isClosed else { return }
        if inSession {
            sendWanted = true
            return
        }
        sendWanted = false
        inSession = true
        let rv = nghttp2_session_send(session)
        inSession = false
        guard rv == 0 else {
            close()
            return
        }
        if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0,
           let bev = bufferEvent, evbuffer_get_length(bufferevent_get_output(bev)) == 0 {
            close()
        }
    }

    /// The one teardown path: cancels every open stream's work, frees nghttp2 then the socket.
    func close() {
        guard !isClosed else { return }
        if inSession {
            // Never free the session from inside its own callbacks: finish after it returns.
            sendWanted = false
            loop.nextTick { self.close() }
            return
        }
        isClosed = true
        currentStream = nil
        let open = streams.values
        streams.removeAll()
        for stream in open { stream.cancel() }
        if let session { nghttp2_session_del(session) }
        session = nil
        if let bufferEvent { bufferevent_free(bufferEvent) }
        bufferEvent = nil
        server?.connectionClosed(self)
    }

    /// Sends GOAWAY (graceful: streams already started may finish).
    func goAway() {
        guard let session, !isClosed else { return }
        let last = nghttp2_session_get_last_proc_stream_id(session)
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
        flush()
    }

    // MARK: nghttp2 callbacks (called from Nghttp2Callbacks)

    func send(_ data: UnsafePointer<UInt8>, _ length: Int) -> Int {
        guard let bev = bufferEvent else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        if evbuffer_get_length(bufferevent_get_output(bev)) >= limits.outputBufferLimit {
            return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue)
        }
        guard bufferevent_write(bev, data, length) == 0 else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        return length
    }

    func beginHeaders(streamID: Int32) {
        let stream = HTTP2Stream(connection: self, streamID: streamID)
        streams[streamID] = stream
        currentStream = stream
    }

    func header(streamID: Int32, name: UnsafePointer<UInt8>, nameLength: Int, value: UnsafePointer<UInt8>, valueLength: Int) {
        guard let stream = stream(streamID), !stream.headersTooLarge, !stream.dispatched else { return }
        stream.headerListBytes += nameLength + valueLength + 32
        if stream.headerListBytes > limits.maxHeaderListBytes {
            stream.headersTooLarge = true
            stream.headers.removeAll()
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
        let path = stream.path
        if stream.headersTooLarge {
            reject(stream, .headerListTooLarge(limit: limits.maxHeaderListBytes), path: path)
            return
        }
        stream.bodyLimit = handler.requestBodyLimit(method: stream.method, path: path)
        if let declared = stream.headers.first(named: "content-length").flatMap({ Int($0) }),
           declared > stream.bodyLimit {
            reject(stream, .bodyTooLarge(limit: stream.bodyLimit), path: path)
            return
        }
        if endStream { dispatch(stream) }
    }

    func dataChunk(streamID: Int32, data: UnsafePointer<UInt8>, length: Int) {
        guard let stream = stream(streamID), !stream.dispatched else { return }
        guard stream.body.count + length <= stream.bodyLimit else {
            reject(stream, .bodyTooLarge(limit: stream.bodyLimit), path: stream.path)
            return
        }
        stream.body.append(contentsOf: UnsafeBufferPointer(start: data, count: length))
    }

    func dataComplete(streamID: Int32) {
        guard let stream = stream(streamID), !stream.dispatched else { return }
        dispatch(stream)
    }

    func streamClosed(streamID: Int32) {
        if currentStream?.streamID == streamID { currentStream = nil }
        streams.removeValue(forKey: streamID)?.cancel()
    }

    /// Invalid frames: past the limit the peer is misbehaving, not unlucky. Terminating makes
    /// nghttp2 ignore further input; the next flush sends GOAWAY and then closes. (Resets are
    /// left to nghttp2's own token-bucket limit, so healthy clients that cancel are not counted.)
    func glitch() {
        glitches += 1
        guard glitches == limits.maxGlitchesPerConnection + 1, let session else { return }
        logger.notice("HTTP/2 peer exceeded the invalid-frame limit; sending GOAWAY")
        nghttp2_session_terminate_session(session, UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
    }

    // MARK: requests and responses

    private func stream(_ id: Int32) -> HTTP2Stream? {
        if let current = currentStream, current.streamID == id { return current }
        currentStream = streams[id]
        return currentStream
    }

    private func dispatch(_ stream: HTTP2Stream) {
        stream.dispatched = true
        let request = HTTPRequest(version: .http2, method: stream.method, path: stream.path, query: stream.query, headers: stream.headers, body: stream.body)
        stream.body = []
        stream.headers.removeAll()
        handler.handle(request, writer: stream)
    }

    private func reject(_ stream: HTTP2Stream, _ violation: HTTPLimitViolation, path: String) {
        stream.dispatched = true
        let contentType = stream.headers.first(named: "content-type")
        stream.body = []
        stream.headers.removeAll()
        stream.respond(handler.limitExceeded(violation, method: stream.method, path: path, contentType: contentType))
    }

    /// Only called by an open stream (HTTP2Stream.respond checks), so no lookup is needed.
    func submit(_ response: HTTPResponse, for stream: HTTP2Stream) {
        guard let session, !isClosed else { return }
        let streamID = stream.streamID
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(response.headers.count + 2)
        fields.append((":status", String(response.status)))
        fields.append(contentsOf: response.headers)
        // No content-length before trailers: a client that has its declared bytes may end the
        // exchange there and never read the trailers (libcurl does).
        if !response.body.isEmpty, response.trailers.isEmpty { fields.append(("content-length", String(response.body.count))) }
        stream.pendingBody = response.body
        stream.pendingOffset = 0
        stream.pendingTrailers = response.trailers
        let rv = withHeaderFields(fields) { nva, count -> Int32 in
            if response.body.isEmpty, response.trailers.isEmpty {
                return nghttp2_submit_response(session, streamID, nva, count, nil)
            }
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
        flush()
    }

    /// Queues the trailer HEADERS frame that ends `stream` (called from its data source once the
    /// body is out, which nghttp2 allows). False when nghttp2 refused it.
    func submitTrailers(_ trailers: [(name: String, value: String)], for stream: HTTP2Stream) -> Bool {
        guard let session else { return false }
        let rv = withHeaderFields(trailers) { nva, count in nghttp2_submit_trailer(session, stream.streamID, nva, count) }
        if rv != 0 {
            logger.error("nghttp2_submit_trailer failed", metadata: ["error": "\(String(cString: nghttp2_strerror(rv)))"])
        }
        return rv == 0
    }
}

/// Lays header fields out as an `nghttp2_nv` array in stack scratch space (once per response).
/// nghttp2 copies them during submit (no NO_COPY flags), so the memory only lives for the call.
private func withHeaderFields<R>(_ fields: [(name: String, value: String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
    let total = fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(total, 1)) { storage in
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(fields.count, 1)) { nva in
            var offset = 0
            for (index, field) in fields.enumerated() {
                let name = storage.baseAddress! + offset
                offset += copyUTF8(field.name, to: name)
                let value = storage.baseAddress! + offset
                let valueLength = copyUTF8(field.value, to: value)
                offset += valueLength
                nva[index] = nghttp2_nv(name: name, value: value, namelen: value - name, valuelen: valueLength,
                                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return body(nva.baseAddress!, fields.count)
        }
    }
}

private func copyUTF8(_ string: String, to destination: UnsafeMutablePointer<UInt8>) -> Int {
    var string = string
    return string.withUTF8 { bytes in
        if let base = bytes.baseAddress { destination.update(from: base, count: bytes.count) }
        return bytes.count
    }
}
