internal import CLibevent
import EventLoop
import Glibc
import Logging
import Synchronization

public struct HTTPServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ call: String, code: Int? = nil) {
        description = code.map { "\(call) failed (\($0))" } ?? "\(call) failed"
    }

    /// A whole sentence, for failures that are not one call's.
    init(describing problem: String) { description = problem }
}

/// What every connection of one server shares. Held strongly by each connection, so a writer
/// the application still holds after the server went away never reaches freed memory.
final class ServerContext {
    let loop: Loop
    let configuration: HTTPServerConfiguration
    let handler: HTTPHandler
    let logger: Logger
    let callbacks: Nghttp2Callbacks
    /// Request bytes every connection of this worker holds, together.
    let requestBytes: RequestByteBudget

    init(loop: Loop, configuration: HTTPServerConfiguration, handler: HTTPHandler, logger: Logger) throws {
        self.loop = loop
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        callbacks = try Nghttp2Callbacks(configuration: configuration)
        requestBytes = RequestByteBudget(limit: configuration.maxBufferedRequestBytesPerWorker)
    }

    /// HTTP/2 connections with answers to send at the end of this loop pass.
    private var pendingFlushes: [HTTP2Connection] = []

    /// Flushes `connection` after the callbacks of this loop pass: one write per connection for
    /// all the answers completed in the pass (one deferral for them all, as Redis' own server
    /// batches its writes before polling again).
    func flushSoon(_ connection: HTTP2Connection) {
        pendingFlushes.append(connection)
        guard pendingFlushes.count == 1 else { return }
        loop.nextTick { [self] in
            let connections = pendingFlushes
            pendingFlushes.removeAll(keepingCapacity: true)
            for connection in connections {
                connection.flushScheduled = false
                connection.flush()
            }
        }
    }
}

/// The listening socket every worker's server accepts from, bound once at start-up. Without
/// SO_REUSEPORT, so a second service asking for the same address (in this process or another)
/// fails with EADDRINUSE instead of silently sharing the port. Each server accepts through its own
/// duplicate of the descriptor; this one closes when the socket object goes, so the port stops
/// accepting once the last server has let go of its duplicate too.
public final class ListeningSocket: Sendable {
    private let fd: Int32
    /// The port actually bound (useful when the address asked for port 0).
    public let port: Int
    /// Shared by the servers accepting from this socket: accept failures are logged once per
    /// episode, not once per worker.
    let acceptPauses = AcceptPauses()

    /// Binds and listens on `host:port` (`[v6]:port`); port 0 picks a free port. Start-up only:
    /// may consult the resolver.
    public init(address: String, backlog: Int32 = 1024) throws(HTTPServerError) {
        var (storage, length) = try Self.resolve(address)
        let fd = socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError(describing: "\(address): socket(): \(String(cString: strerror(errno)))") }
        // SO_REUSEADDR only lets a restart bind past the previous run's TIME_WAIT connections.
        var on: Int32 = 1
        let bound = withUnsafeMutablePointer(to: &storage) { address in
            address.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size)) == 0
                    && bind(fd, address, length) == 0 && listen(fd, backlog) == 0
                    && getsockname(fd, address, &length) == 0
            }
        }
        guard bound else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HTTPServerError(describing: "\(address): \(reason)")
        }
        self.fd = fd
        port = Int(storage.ss_family == sa_family_t(AF_INET6)
            ? withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
            : withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } })
    }

    deinit { Glibc.close(fd) }

    /// A descriptor of the same socket for one server's listener to own (close-on-exec,
    /// non-blocking like the original: it shares the open file description).
    func duplicate() throws -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw HTTPServerError(describing: "duplicating the listening socket: \(String(cString: strerror(errno)))") }
        return copy
    }

    /// `host:port` or `[v6]:port` to a socket address.
    private static func resolve(_ listen: String) throws(HTTPServerError) -> (sockaddr_storage, socklen_t) {
        guard let colon = listen.lastIndex(of: ":") else { throw HTTPServerError(describing: "\"\(listen)\" has no port") }
        var host = String(listen[..<colon])
        let port = String(listen[listen.index(after: colon)...])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host.isEmpty ? nil : host, port, &hints, &found)
        guard rc == 0, let first = found, let address = first.pointee.ai_addr else {
            throw HTTPServerError(describing: "\"\(listen)\" does not resolve: \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(found) }
        var storage = sockaddr_storage()
        let length = first.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(length))) }
        return (storage, length)
    }
}

/// How many servers of one listening socket have paused accepting (out of descriptors): the
/// first to pause logs the episode, the last to recover logs its end.
final class AcceptPauses: Sendable {
    private let paused = Atomic<Int>(0)

    /// True for the first server to pause.
    func begin() -> Bool { paused.add(1, ordering: .relaxed).newValue == 1 }
    /// True for the last server to recover.
    func end() -> Bool { paused.subtract(1, ordering: .relaxed).newValue == 0 }
}

/// The HTTP server of one loop (HTTP/2 with prior knowledge and HTTP/1.1 on the same port, in
/// cleartext or TLS with ALPN): its own listener on the shared `ListeningSocket`, and its
/// connections, each handing requests to one `HTTPHandler`.
/// Loop-confined: create, use and drop it on the loop's thread.
public final class HTTPServer {
    private let context: ServerContext
    private var listener: OpaquePointer?
    private var connections: [ObjectIdentifier: ServerConnection] = [:]
    /// TLS connections still in their handshake: not yet any protocol's.
    private var handshakes: [ObjectIdentifier: TLSHandshake] = [:]
    private var onDrained: (() -> Void)?
    /// The port actually bound (useful when the configuration asked for port 0).
    public let port: Int

    private let acceptPauses: AcceptPauses
    /// Set while accepting is paused after accept() failed (EMFILE, ENFILE…); the timer resumes it.
    private var acceptPaused = false
    private let acceptRetry: Timer
    private var acceptRetryMilliseconds = HTTPServer.firstAcceptRetryMilliseconds
    private static let firstAcceptRetryMilliseconds = 50
    private static let lastAcceptRetryMilliseconds = 2000
    /// Set while this worker has as many connections as it may: its listener is off, so the
    /// shared socket's next connections go to the other workers (or wait in the backlog).
    private var pausedAtCap = false
    /// When the connection cap was last logged (monotonic ms): at most one line a minute.
    private var connectionCapLoggedAt: Int64?

    private var stats: HTTPServerStats? { context.configuration.stats }

    /// A server with a listening socket of its own on `configuration.listen` (one worker, tests).
    public convenience init(loop: Loop, configuration: HTTPServerConfiguration, handler: HTTPHandler, logger: Logger) throws {
        try self.init(loop: loop, listeningOn: ListeningSocket(address: configuration.listen), configuration: configuration,
                      handler: handler, logger: logger)
    }

    /// A server accepting from `socket`, which other loops' servers may share (`listen` in the
    /// configuration is not used: the socket is bound already).
    public init(loop: Loop, listeningOn socket: ListeningSocket, configuration: HTTPServerConfiguration, handler: HTTPHandler,
                logger: Logger) throws {
        loop.assertInLoop()
        context = try ServerContext(loop: loop, configuration: configuration, handler: handler, logger: logger)
        port = socket.port
        acceptPauses = socket.acceptPauses
        acceptRetry = try Timer(loop: loop)
        let fd = try socket.duplicate()
        // Backlog 0: the socket listens already. The listener owns the duplicate from here on;
        // it starts disabled so that nothing is accepted before the error callback is set.
        guard let listener = evconnlistener_new(loop.base, { _, fd, _, _, arg in
            guard let arg else { close(fd); return }
            Unmanaged<HTTPServer>.fromOpaque(arg).takeUnretainedValue().accepted(fd)
        }, Unmanaged.passUnretained(self).toOpaque(), UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED), 0, fd) else {
            Glibc.close(fd)
            throw HTTPServerError("evconnlistener_new")
        }
        self.listener = listener
        evconnlistener_set_error_cb(listener) { _, arg in
            let error = errno
            guard let arg else { return }
            Unmanaged<HTTPServer>.fromOpaque(arg).takeUnretainedValue().acceptFailed(error)
        }
        guard evconnlistener_enable(listener) == 0 else { throw HTTPServerError("evconnlistener_enable") }
    }

    deinit {
        stopAccepting()
        // Closing them cannot reach this server any more (their reference to it is weak), so
        // the gauge is settled here.
        for _ in 0..<(handshakes.count + connections.count) { stats?.connectionClosed() }
        for handshake in handshakes.values { handshake.close() }
        for connection in connections.values { connection.close() }
    }

    // MARK: accepting

    private func accepted(_ fd: Int32) {
        if acceptPaused {
            acceptPaused = false
            acceptRetryMilliseconds = Self.firstAcceptRetryMilliseconds
            if acceptPauses.end() { context.logger.notice("accepting connections again") }
        }
        accept(fd)
        pauseAtCapIfFull()
    }

    /// At the connection cap, stop taking connections from the shared socket instead of taking
    /// and closing them: another worker may have room.
    private func pauseAtCapIfFull() {
        guard !pausedAtCap, openConnections >= context.configuration.maxConnectionsPerWorker, let listener else { return }
        pausedAtCap = true
        evconnlistener_disable(listener)
        logConnectionCap("connection limit reached; this worker accepts again once one of its connections closes")
    }

    private func resumeBelowCap() {
        guard pausedAtCap, openConnections < context.configuration.maxConnectionsPerWorker else { return }
        pausedAtCap = false
        // An accept() back-off in progress re-enables the listener itself when its timer fires.
        if !acceptPaused, let listener { evconnlistener_enable(listener) }
    }

    private func logConnectionCap(_ message: Logger.Message) {
        let now = context.loop.monotonicMilliseconds
        guard connectionCapLoggedAt.map({ now - $0 >= 60_000 }) ?? true else { return }
        connectionCapLoggedAt = now
        context.logger.warning("\(message) (logged at most once a minute)", metadata: ["limit": "\(context.configuration.maxConnectionsPerWorker)"])
    }

    /// accept() failed for a reason other than a vanished peer, most often EMFILE or ENFILE:
    /// the pending connection stays queued and libevent would report it again at once, forever
    /// (a core at 100%). Stop listening and try again after a back-off that doubles.
    private func acceptFailed(_ error: Int32) {
        stats?.acceptFailed()
        guard let listener else { return }
        evconnlistener_disable(listener)
        if !acceptPaused {
            acceptPaused = true
            if acceptPauses.begin() {
                context.logger.error("accepting connections failed; pausing with back-off until it works again", metadata: [
                    "error": "\(String(cString: strerror(error)))",
                ])
            }
        }
        let delay = acceptRetryMilliseconds
        acceptRetryMilliseconds = min(delay * 2, Self.lastAcceptRetryMilliseconds)
        do {
            try acceptRetry.arm(milliseconds: delay) { [weak self] in
                guard let self, !self.pausedAtCap, let listener = self.listener else { return }
                evconnlistener_enable(listener)
            }
        } catch {
            // No timer: better to retry at once than to stop accepting for good.
            evconnlistener_enable(listener)
        }
    }

    /// Frees the listener (closing this server's duplicate of the socket). Idempotent.
    private func stopAccepting() {
        acceptRetry.cancel()
        if let listener { evconnlistener_free(listener) }
        listener = nil
        if acceptPaused {
            acceptPaused = false
            _ = acceptPauses.end()
        }
    }

    /// Takes over an accepted socket, or closes it at once past the connection cap. Internal for
    /// tests, which hand it sockets that cannot be set up.
    func accept(_ fd: Int32) {
        guard openConnections < context.configuration.maxConnectionsPerWorker else { return refuseOverCap(fd) }
        stats?.connectionOpened()
        // Answers are written whole; Nagle would only hold back their last segment.
        var nodelay: Int32 = 1
        if setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &nodelay, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            context.logger.debug("TCP_NODELAY refused", metadata: ["error": "\(String(cString: strerror(errno)))"])
        }
        if let tls = context.configuration.tls { return acceptTLS(fd: fd, tls: tls.current) }
        guard let bufferEvent = bufferevent_socket_new(context.loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)) else {
            Glibc.close(fd)
            stats?.connectionClosed()
            context.logger.error("could not set up an accepted connection", metadata: ["error": "bufferevent_socket_new failed"])
            return
        }
        // Cleartext carries no ALPN: the first bytes tell the protocol (see handOver).
        sniff(ConnectionSocket(bufferEvent: bufferEvent))
    }

    /// A connection accepted in the same burst as the one that reached the cap: closed at once.
    private func refuseOverCap(_ fd: Int32) {
        // Counted before the close, which the peer may see (and a scrape follow) at once.
        stats?.refused(.connectionLimit)
        Glibc.close(fd)
        logConnectionCap("connection limit reached; closing new connections at once")
    }

    /// Lets the first bytes choose the protocol.
    private func sniff(_ socket: ConnectionSocket) {
        let sniffer: ConnectionSniffer
        do {
            sniffer = try ConnectionSniffer(socket: socket, context: context, server: self)
        } catch {
            socket.close()
            stats?.connectionClosed()
            context.logger.error("could not set up an accepted connection", metadata: ["error": "\(error)"])
            return
        }
        connections[ObjectIdentifier(sniffer)] = sniffer
        do {
            try sniffer.start()
        } catch {
            context.logger.error("could not set up an accepted connection", metadata: ["error": "\(error)"])
            return sniffer.close()
        }
        // Bytes decrypted during a TLS handshake are already buffered and will not be announced again.
        sniffer.readable()
    }

    // MARK: TLS

    /// Starts the TLS handshake on an accepted socket, with the newest context.
    private func acceptTLS(fd: Int32, tls: TLSContext) {
        do {
            let handshake = try TLSHandshake(fd: fd, tls: tls, context: context, server: self)
            handshakes[ObjectIdentifier(handshake)] = handshake
        } catch {
            stats?.connectionClosed()
            context.logger.error("could not set up an accepted TLS connection", metadata: ["error": "\(error)"])
        }
    }

    /// The handshake is done: its bufferevent goes to the connection type ALPN chose, or, when
    /// the client named none, to the one its first bytes choose.
    func handshakeFinished(_ handshake: TLSHandshake, bufferEvent: OpaquePointer, negotiated: NegotiatedProtocol) {
        handshakes.removeValue(forKey: ObjectIdentifier(handshake))
        context.logger.debug("TLS handshake done", metadata: ["alpn": "\(negotiated.rawValue)"])
        let socket = ConnectionSocket(bufferEvent: bufferEvent)
        switch negotiated {
        case .http2: serve(socket, speaking: .http2)
        case .http1: serve(socket, speaking: .http1)
        case .notNegotiated: sniff(socket)
        }
    }

    func handshakeClosed(_ handshake: TLSHandshake) {
        guard handshakes.removeValue(forKey: ObjectIdentifier(handshake)) != nil else { return }
        stats?.connectionClosed()
        resumeBelowCap()
        drainedIfDone()
    }

    // MARK: connections

    /// The sniffer has seen enough of its connection's first bytes: the socket now belongs to the
    /// connection type for `wire`.
    func handOver(_ socket: ConnectionSocket, from sniffer: ConnectionSniffer, speaking wire: WireProtocol) {
        connections.removeValue(forKey: ObjectIdentifier(sniffer))
        serve(socket, speaking: wire)
    }

    /// The one place a connection type takes over a ready socket, however the protocol was chosen
    /// (first bytes on cleartext; ALPN once TLS is set up). Bytes already read stay in the
    /// socket's input buffer and are parsed by the new owner first.
    func serve(_ socket: ConnectionSocket, speaking wire: WireProtocol) {
        let connection: ServerConnection
        do {
            switch wire {
            case .http2: connection = try HTTP2Connection(socket: socket, context: context, server: self)
            case .http1: connection = try HTTP1Connection(socket: socket, context: context, server: self)
            }
        } catch {
            socket.close()
            stats?.connectionClosed()
            context.logger.error("could not set up an accepted connection", metadata: ["error": "\(error)"])
            return
        }
        connections[ObjectIdentifier(connection)] = connection
        do {
            try socket.attach(connection, idleSeconds: context.configuration.idleTimeoutSeconds)
        } catch {
            context.logger.error("could not set up an accepted connection", metadata: ["error": "\(error)"])
            return connection.close()
        }
        // What arrived with the first bytes is already buffered and will not be announced again.
        connection.readable()
    }

    /// Connections currently open (TLS ones still in their handshake too).
    public var openConnections: Int { connections.count + handshakes.count }

    /// Request bytes this server's connections hold now (internal: for tests).
    var requestBytesHeld: Int { context.requestBytes.used }

    /// A connection closed for good (a sniffer that handed over is not closed: `handOver`).
    func connectionClosed(_ connection: ServerConnection) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        stats?.connectionClosed()
        resumeBelowCap()
        drainedIfDone()
    }

    private func drainedIfDone() {
        if connections.isEmpty, handshakes.isEmpty, listener == nil, let onDrained {
            self.onDrained = nil
            onDrained()
        }
    }

    /// Graceful stop: no new connections; idle ones (TLS handshakes, sniffers that have not
    /// chosen, HTTP/1.1 between requests) close now, HTTP/2 ones get GOAWAY, HTTP/1.1 ones with
    /// a request close after its answer. `onDrained` runs once every connection has closed.
    public func drain(onDrained: @escaping () -> Void) {
        context.loop.assertInLoop()
        stopAccepting()
        self.onDrained = onDrained
        // A connection still in its TLS handshake has no request in flight: nothing to wait for.
        for handshake in Array(handshakes.values) { handshake.close() }
        for connection in Array(connections.values) { connection.goAway() }
        drainedIfDone()
    }

    /// Hard stop after the drain deadline: closes whatever is still open.
    public func closeAll() {
        for handshake in Array(handshakes.values) { handshake.close() }
        for connection in Array(connections.values) { connection.close() }
    }
}
