internal import CLibevent
import EventLoop
import Glibc
import Logging

public struct HTTPServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ call: String, code: Int? = nil) {
        description = code.map { "\(call) failed (\($0))" } ?? "\(call) failed"
    }
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
}

/// The HTTP server of one loop (HTTP/2 with prior knowledge and HTTP/1.1 on the same port, in
/// cleartext or TLS with ALPN): its own SO_REUSEPORT listener and its connections, each handing
/// requests to one `HTTPHandler`.
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

    public init(loop: Loop, configuration: HTTPServerConfiguration, handler: HTTPHandler, logger: Logger) throws {
        loop.assertInLoop()
        context = try ServerContext(loop: loop, configuration: configuration, handler: handler, logger: logger)

        var (address, length) = try Self.resolve(configuration.listen)
        let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC)
        let listener = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                evconnlistener_new_bind(loop.base, { _, fd, _, _, arg in
                    guard let arg else { close(fd); return }
                    Unmanaged<HTTPServer>.fromOpaque(arg).takeUnretainedValue().accept(fd)
                }, nil, flags, 1024, $0, Int32(length))
            }
        }
        guard let listener else {
            throw HTTPServerError("listening on \(configuration.listen): \(String(cString: strerror(errno)))")
        }
        self.listener = listener
        var bound = sockaddr_storage()
        var boundLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(evconnlistener_get_fd(listener), $0, &boundLength) }
        }
        port = Int(bound.ss_family == sa_family_t(AF_INET6)
            ? withUnsafePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
            : withUnsafePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } })
        // The accept callback's argument can only name `self` now that it exists.
        evconnlistener_set_cb(listener, { _, fd, _, _, arg in
            guard let arg else { close(fd); return }
            Unmanaged<HTTPServer>.fromOpaque(arg).takeUnretainedValue().accept(fd)
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        if let listener { evconnlistener_free(listener) }
        for handshake in handshakes.values { handshake.close() }
        for connection in connections.values { connection.close() }
    }

    /// `host:port` or `[v6]:port` to a socket address (start-up only: may consult the resolver).
    private static func resolve(_ listen: String) throws -> (sockaddr_storage, socklen_t) {
        guard let colon = listen.lastIndex(of: ":") else { throw HTTPServerError("listen address \"\(listen)\" has no port") }
        var host = String(listen[..<colon])
        let port = String(listen[listen.index(after: colon)...])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host.isEmpty ? nil : host, port, &hints, &found)
        guard rc == 0, let first = found, let address = first.pointee.ai_addr else {
            throw HTTPServerError("resolving listen address \"\(listen)\": \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(found) }
        var storage = sockaddr_storage()
        let length = first.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(length))) }
        return (storage, length)
    }

    /// Internal for tests, which hand it sockets that cannot be set up.
    func accept(_ fd: Int32) {
        // Answers are written whole; Nagle would only hold back their last segment.
        var nodelay: Int32 = 1
        if setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &nodelay, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            context.logger.debug("TCP_NODELAY refused", metadata: ["error": "\(String(cString: strerror(errno)))"])
        }
        if let tls = context.configuration.tls { return acceptTLS(fd: fd, tls: tls.current) }
        guard let bufferEvent = bufferevent_socket_new(context.loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)) else {
            Glibc.close(fd)
            context.logger.error("could not set up an accepted connection", metadata: ["error": "bufferevent_socket_new failed"])
            return
        }
        // Cleartext carries no ALPN: the first bytes tell the protocol (see handOver).
        sniff(ConnectionSocket(bufferEvent: bufferEvent))
    }

    /// Lets the first bytes choose the protocol.
    private func sniff(_ socket: ConnectionSocket) {
        let sniffer = ConnectionSniffer(socket: socket, server: self)
        connections[ObjectIdentifier(sniffer)] = sniffer
        do {
            try sniffer.start(idleSeconds: context.configuration.idleTimeoutSeconds)
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
        handshakes.removeValue(forKey: ObjectIdentifier(handshake))
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
            case .http1: connection = HTTP1Connection(socket: socket, context: context, server: self)
            }
        } catch {
            socket.close()
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

    func connectionClosed(_ connection: ServerConnection) {
        connections.removeValue(forKey: ObjectIdentifier(connection))
        if connections.isEmpty, listener == nil, let onDrained {
            self.onDrained = nil
            onDrained()
        }
    }

    /// Graceful stop: no new connections, GOAWAY to every open one (HTTP/1.1: `connection: close`
    /// on the answer in flight); `onDrained` runs once every connection has finished and closed.
    public func drain(onDrained: @escaping () -> Void) {
        context.loop.assertInLoop()
        if let listener { evconnlistener_free(listener) }
        listener = nil
        // A connection still in its TLS handshake has no request in flight: nothing to wait for.
        for handshake in Array(handshakes.values) { handshake.close() }
        guard !connections.isEmpty else { return onDrained() }
        self.onDrained = onDrained
        for connection in Array(connections.values) { connection.goAway() }
    }

    /// Hard stop after the drain deadline: closes whatever is still open.
    public func closeAll() {
        for handshake in Array(handshakes.values) { handshake.close() }
        for connection in Array(connections.values) { connection.close() }
    }
}
