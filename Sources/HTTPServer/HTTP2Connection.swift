internal import CLibevent
internal import CNghttp2
import EventLoop
import Glibc
import Logging

/// One HTTP/2 connection: owns its `nghttp2_session` and frees it on one path (`close`), which
/// also closes its socket. Structure follows nghttp2's examples/libevent-server.c (v1.52.0).
/// Loop-confined.
final class HTTP2Connection: ServerConnection {
    private let context: ServerContext
    /// Told when this connection closes; weak because the server may be gone first.
    private weak var server: HTTPServer?
    private let socket: ConnectionSocket
    private var session: OpaquePointer?
    private var streams: [Int32: HTTP2Stream] = [:]
    /// The stream the last callbacks were about: a request's callbacks (one per header field,
    /// then its DATA) arrive in a run, so most lookups end here instead of hashing.
    private var currentStream: HTTP2Stream?
    private var glitches = 0
    /// True while nghttp2 is inside mem_recv/send: it must not be re-entered or freed then.
    private var inSession = false
    private var sendWanted = false
    private(set) var isClosed = false

    var loop: Loop { context.loop }
    var logger: Logger { context.logger }
    var handler: HTTPHandler { context.handler }
    var limits: HTTPServerConfiguration { context.configuration }

    /// Sets up HTTP/2 on a socket whose peer is known to speak it (the server attaches the socket
    /// once this exists). Throws before the object exists, so no half-built one is left for
    /// `deinit` to judge; from then on, failures go through `close()`, the one teardown path.
    init(socket: ConnectionSocket, context: ServerContext, server: HTTPServer) throws {
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
        self.server = server
        self.socket = socket
        self.session = session
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        // Every path that gives up a connection marks it closed first.
        precondition(isClosed, "HTTP2Connection freed without close()")
    }

    // MARK: socket events

    func readable() {
        guard let session, let input = socket.input else { return }
        let length = evbuffer_get_length(input)
        // Handed over with nothing buffered (as ALPN will): our SETTINGS still go out now.
        guard length > 0, let data = evbuffer_pullup(input, -1) else { return flush() }
        inSession = true
        let consumed = nghttp2_session_mem_recv(session, data, length)
        inSession = false
        guard consumed >= 0, evbuffer_drain(input, Int(consumed)) == 0 else {
            logger.debug("closing HTTP/2 connection", metadata: ["reason": "\(String(cString: nghttp2_strerror(Int32(clamping: consumed))))"])
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
        streams.values.contains { $0.dispatched && !$0.hasResponded && !$0.isCancelled }
    }

    /// Lets nghttp2 write what it has queued; once neither side has anything left to say, the
    /// socket closes after writing.
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
        // Done both ways (GOAWAY sent and no stream left, or the session terminated): the socket
        // writes what is queued, then half-closes and waits for the peer's EOF. Closing now could
        // meet input not yet read, and the kernel's reset would destroy our last frames. EOF or
        // the linger limit then comes back through close(), which frees the session.
        if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0 {
            socket.closeAfterWriting()
        }
    }

    /// The one teardown path: cancels every open stream's work, frees nghttp2, closes the socket.
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
        socket.close()
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
        if socket.outputLength >= limits.outputBufferLimit { return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue) }
        guard socket.write(data, length) else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
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
        let request = HTTPRequest(version: .http2, method: stream.method, path: stream.path, query: stream.query, headers: stream.headers, body: stream.body,
                                  peer: socket.peer)
        stream.body = []
        stream.headers.removeAll()
        handler.handle(request, writer: stream)
    }

    private func reject(_ stream: HTTP2Stream, _ violation: HTTPLimitViolation, path: String) {
        stream.dispatched = true
        let contentType = stream.headers.first(named: "content-type")
        stream.body = []
        stream.headers.removeAll()
        stream.respond(handler.limitExceeded(violation, version: .http2, method: stream.method, path: path, contentType: contentType))
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
