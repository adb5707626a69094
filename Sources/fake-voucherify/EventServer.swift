import CLibevent
import Codecs
import EventLoop
import Glibc

struct StartupError: Error, CustomStringConvertible {
    let description: String
}

/// The HTTP/1.1 server on a `Loop`: owns the evhttp server, the signal events and one timer per
/// delayed answer, keeps every request whose answer comes later, and streams large bodies piece
/// by piece as the client takes them. The loop itself belongs to
/// the caller. C callbacks find this object again through Unmanaged and call one method each.
/// `teardown()` is the single place that frees the handles, in a safe order. Loop-confined.
final class EventServer {
    private let loop: Loop
    private var http: OpaquePointer?
    private var signalEvents: [OpaquePointer] = []
    /// Requests not answered yet, by id: waiting for their delay, for deferred work, or both.
    /// Whatever keeps a request waiting, it is kept here and leaves through `settle` or
    /// `connectionClosing`, the only places that end an exchange.
    private var open: [UInt64: OpenRequest] = [:]
    private var nextOpenId: UInt64 = 0
    private let handler: (IncomingRequest) -> Dispatch
    private(set) var port: Int = 0

    static let maxBodyBytes = 1 << 20

    private struct OpenRequest {
        let request: OpaquePointer
        /// The connection it came on. Remembered because libevent detaches the request from it
        /// when the client goes away, before telling us the connection closes.
        let connection: OpaquePointer?
        /// Armed while the answer waits out its delay.
        var delay: Timer?
        let onFinish: (() -> Void)?
        /// Set once a streamed answer has begun: where its next piece comes from.
        var stream: StreamedResponse?
    }

    init(loop: Loop, handler: @escaping (IncomingRequest) -> Dispatch) {
        self.loop = loop
        self.handler = handler
    }

    deinit {
        teardown()
    }

    /// Creates the server on the loop, binds, installs SIGINT/SIGTERM handlers that stop the loop.
    /// Returns the bound port.
    func start(host: String, port requestedPort: Int) throws -> Int {
        signal(SIGPIPE, SIG_IGN)
        LibeventLog.install()
        guard let http = evhttp_new(loop.base) else { throw StartupError(description: "cannot create the libevent HTTP server") }
        self.http = http

        let me = Unmanaged.passUnretained(self).toOpaque()
        evhttp_set_gencb(http, { request, arg in
            guard let request, let arg else { return }
            Unmanaged<EventServer>.fromOpaque(arg).takeUnretainedValue().handleRequest(request)
        }, me)
        evhttp_set_max_body_size(http, EventServer.maxBodyBytes)  // ev_ssize_t is a macro for ssize_t (Int)
        // Let every method reach the router so unsupported ones get a JSON 405 rather than libevent's HTML.
        let allMethods = [EVHTTP_REQ_GET, EVHTTP_REQ_POST, EVHTTP_REQ_HEAD, EVHTTP_REQ_PUT, EVHTTP_REQ_DELETE,
                          EVHTTP_REQ_OPTIONS, EVHTTP_REQ_TRACE, EVHTTP_REQ_CONNECT, EVHTTP_REQ_PATCH]
            .reduce(UInt32(0)) { $0 | $1.rawValue }
        evhttp_set_allowed_methods(http, UInt16(allMethods))

        guard (0...65535).contains(requestedPort) else { throw StartupError(description: "port \(requestedPort) is out of range 0…65535") }
        errno = 0
        let (handle, libeventSays) = LibeventLog.capture { evhttp_bind_socket_with_handle(http, host, UInt16(requestedPort)) }
        guard let bound = handle else {
            let reason = libeventSays ?? (errno != 0 ? String(cString: strerror(errno)) : "unknown error")
            throw StartupError(description: "cannot listen on \(host):\(requestedPort): \(reason)")
        }
        port = try EventServer.localPort(of: evhttp_bound_socket_get_fd(bound))

        for sig in [SIGINT, SIGTERM] {
            guard let ev = event_new(loop.base, sig, Int16(EV_SIGNAL | EV_PERSIST), { _, _, arg in
                guard let arg else { return }
                Unmanaged<EventServer>.fromOpaque(arg).takeUnretainedValue().loop.stop()
            }, me) else {
                throw StartupError(description: "cannot create the signal event for signal \(sig)")
            }
            signalEvents.append(ev)
            guard event_add(ev, nil) == 0 else { throw StartupError(description: "cannot watch signal \(sig)") }
        }
        // A parent may spawn us with signals blocked (Foundation's Process on Linux does):
        // stopping relies on these two arriving.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        guard pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil) == 0 else {
            throw StartupError(description: "cannot unblock SIGINT and SIGTERM")
        }
        return port
    }

    /// Frees every handle once, before the loop goes: the requests still open (left to evhttp or
    /// freed if detached; answers that come later are dropped; their handlers hear they are over),
    /// then the HTTP server with its connections, then the signal events.
    func teardown() {
        let unanswered = open.values
        open.removeAll()
        for entry in unanswered {
            entry.delay?.cancel()
            freeIfDetached(entry.request)
            entry.onFinish?()
        }
        if let http { evhttp_free(http) }
        http = nil
        for ev in signalEvents { event_free(ev) }
        signalEvents.removeAll()
    }

    // MARK: - Requests

    private func handleRequest(_ req: OpaquePointer) {
        guard let incoming = makeIncoming(req) else { return }
        let dispatch = handler(incoming)
        if case .respond(let response) = dispatch.action, dispatch.delayMs <= 0 {
            send(req, response)
            dispatch.onFinish?()
            return
        }
        let id = keepOpen(req, onFinish: dispatch.onFinish)
        // Drops go through a timer even without delay, so the connection is never freed inside libevent's own callback.
        guard dispatch.delayMs > 0 || dispatch.isDrop else {
            proceed(id, dispatch.action)
            return
        }
        do {
            open[id]?.delay = try Timer.schedule(on: loop, after: max(0, dispatch.delayMs)) { [unowned self] in
                proceed(id, dispatch.action)
            }
        } catch {
            logError("cannot set a timer (\(error)); answering at once")
            proceed(id, dispatch.action)
        }
    }

    /// Copies what the handlers need out of libevent. Answers 400/413 itself when the request is unusable.
    private func makeIncoming(_ req: OpaquePointer) -> IncomingRequest? {
        guard let uriPointer = evhttp_request_get_uri(req) else {
            send(req, badRequest("request has no URI"))
            return nil
        }
        let uri = String(cString: uriPointer)
        let withoutFragment = uri.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
        let parts = withoutFragment.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts.first.map(String.init) ?? ""
        guard let query = IncomingRequest.parseQuery(parts.count > 1 ? parts[1] : "") else {
            send(req, badRequest("malformed percent-encoding in the query string"))
            return nil
        }

        var body: [UInt8] = []
        if let input = evhttp_request_get_input_buffer(req) {
            let length = evbuffer_get_length(input)
            guard length <= EventServer.maxBodyBytes else {
                send(req, ControlReply.failure(413, "request body over 1 MiB"))
                return nil
            }
            if length > 0 {
                body = [UInt8](repeating: 0, count: length)
                let copied = body.withUnsafeMutableBytes { evbuffer_remove(input, $0.baseAddress, length) }
                guard copied == Int32(length) else {
                    send(req, badRequest("could not read the request body"))
                    return nil
                }
            }
        }

        let headers = evhttp_request_get_input_headers(req)
        return IncomingRequest(
            method: EventServer.method(of: evhttp_request_get_command(req)),
            rawPath: path,
            query: query,
            header: { name in headers.flatMap { evhttp_find_header($0, name) }.map { String(cString: $0) } },
            body: body)
    }

    private func badRequest(_ details: String) -> OutgoingResponse {
        .json(400, VoucherifyErrorBody.body(code: 400, key: "bad_request", message: "Bad request", details: details))
    }

    private static func method(of command: evhttp_cmd_type) -> IncomingRequest.Method {
        switch command {
        case EVHTTP_REQ_GET: return .get
        case EVHTTP_REQ_POST: return .post
        case EVHTTP_REQ_PUT: return .put
        case EVHTTP_REQ_DELETE: return .delete
        case EVHTTP_REQ_HEAD: return .head
        case EVHTTP_REQ_OPTIONS: return .options
        case EVHTTP_REQ_PATCH: return .patch
        case EVHTTP_REQ_TRACE: return .trace
        case EVHTTP_REQ_CONNECT: return .connect
        default: return .other
        }
    }

    private func send(_ req: OpaquePointer, _ response: OutgoingResponse) {
        addHeaders(response.headers, to: req)
        guard let buffer = evbuffer_new() else {
            logError("cannot allocate a response buffer")
            evhttp_send_error(req, 500, nil)
            return
        }
        defer { evbuffer_free(buffer) }
        let added = response.body.withUnsafeBytes { evbuffer_add(buffer, $0.baseAddress, $0.count) }
        if added != 0 { logError("cannot fill the response buffer") }
        // With no connection left (client went away), libevent frees the request here.
        evhttp_send_reply(req, response.status, reasonPhrase(response.status), buffer)
    }

    private func addHeaders(_ headers: [(String, String)], to req: OpaquePointer) {
        guard let out = evhttp_request_get_output_headers(req) else { return }
        for (name, value) in headers where evhttp_add_header(out, name, value) != 0 {
            logError("cannot add header \(name)")
        }
    }

    // MARK: - Streamed answers

    /// Sends the status line and headers of the open request `id`; the pieces follow on later
    /// ticks, each once the previous one is written out (`pieceWritten`), so a slow reader holds
    /// one piece in memory, never the whole body. Pieces never go from inside a libevent callback:
    /// ending or dropping the answer may free the connection.
    private func startStream(_ id: UInt64, _ streamed: StreamedResponse) {
        guard let entry = open[id] else { return }
        // libevent's reply_start needs the connection; without one the client has gone.
        guard evhttp_request_get_connection(entry.request) != nil else {
            settle(id, by: freeIfDetached)
            return
        }
        addHeaders(streamed.headers, to: entry.request)
        evhttp_send_reply_start(entry.request, streamed.status, reasonPhrase(streamed.status))
        open[id]?.stream = streamed
        loop.nextTick { [weak self] in self?.sendNextPiece(id) }
    }

    private func sendNextPiece(_ id: UInt64) {
        guard let entry = open[id], let stream = entry.stream else { return }
        guard let piece = stream.nextPiece(), !piece.isEmpty else {
            // Ends the chunked body; with no connection left libevent frees the request instead.
            settle(id) { evhttp_send_reply_end($0) }
            return
        }
        guard let buffer = evbuffer_new() else {
            logError("cannot allocate a response buffer; closing a streamed answer midway")
            settle(id, by: drop)
            return
        }
        defer { evbuffer_free(buffer) }
        guard piece.withUnsafeBytes({ evbuffer_add(buffer, $0.baseAddress, $0.count) }) == 0 else {
            logError("cannot fill the response buffer; closing a streamed answer midway")
            settle(id, by: drop)
            return
        }
        evhttp_send_reply_chunk_with_cb(entry.request, buffer, { connection, arg in
            guard let connection, let arg else { return }
            Unmanaged<EventServer>.fromOpaque(arg).takeUnretainedValue().pieceWritten(on: connection)
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// libevent has written everything queued on `connection`: the next piece goes on the next
    /// tick. A connection carries one answer at a time, so it names the stream.
    private func pieceWritten(on connection: OpaquePointer) {
        guard let id = open.first(where: { $0.value.connection == connection && $0.value.stream != nil })?.key else { return }
        loop.nextTick { [weak self] in self?.sendNextPiece(id) }
    }

    // MARK: - Answers that come later

    private func keepOpen(_ req: OpaquePointer, onFinish: (() -> Void)?) -> UInt64 {
        nextOpenId += 1
        let connection = evhttp_request_get_connection(req)
        open[nextOpenId] = OpenRequest(request: req, connection: connection, delay: nil, onFinish: onFinish)
        if let connection { watchClosing(connection) }
        return nextOpenId
    }

    /// Learn when libevent frees the connection, so a late timer or deferred answer never
    /// touches a freed request.
    private func watchClosing(_ connection: OpaquePointer) {
        evhttp_connection_set_closecb(connection, { connection, arg in
            guard let connection, let arg else { return }
            Unmanaged<EventServer>.fromOpaque(arg).takeUnretainedValue().connectionClosing(connection)
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Carries out `action` for the open request `id` once its delay, if any, is over.
    private func proceed(_ id: UInt64, _ action: Dispatch.Action) {
        switch action {
        case .respond(let response):
            settle(id) { send($0, response) }
        case .stream(let streamed):
            startStream(id, streamed)
        case .drop:
            settle(id, by: drop)
        case .deferred(let start):
            // Weak: the work may outlive the server at shutdown; its answer then goes nowhere.
            start { [weak self] response in
                guard let self else { return }
                settle(id) { send($0, response) }
            }
        }
    }

    /// Ends the open request `id` by `ending` it (an answer or a drop) and tells its handler.
    /// Does nothing when it has ended already: the client went away, the server was torn down,
    /// or a second answer came.
    private func settle(_ id: UInt64, by ending: (OpaquePointer) -> Void) {
        guard let entry = open.removeValue(forKey: id) else { return }
        entry.delay?.cancel()
        ending(entry.request)
        entry.onFinish?()
    }

    private func drop(_ req: OpaquePointer) {
        if let connection = evhttp_request_get_connection(req) {
            evhttp_connection_free(connection)  // closes the socket and frees the request with it
        } else {
            evhttp_request_free(req)
        }
    }

    /// libevent is about to free `connection` and the requests still queued on it. A request
    /// whose client went away was detached from it first: nobody will answer it now, so it is
    /// ours to free.
    private func connectionClosing(_ connection: OpaquePointer) {
        let ended = open.filter { $0.value.connection == connection }
        for (id, entry) in ended {
            open.removeValue(forKey: id)
            entry.delay?.cancel()
            freeIfDetached(entry.request)
            entry.onFinish?()
        }
    }

    private func freeIfDetached(_ req: OpaquePointer) {
        if evhttp_request_get_connection(req) == nil { evhttp_request_free(req) }
    }

    // MARK: - Helpers

    private static func localPort(of fd: Int32) throws -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { throw StartupError(description: "getsockname failed: \(String(cString: strerror(errno)))") }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        default:
            throw StartupError(description: "bound socket has unexpected address family \(storage.ss_family)")
        }
    }
}
