internal import CLibevent
internal import CLibeventOpenSSL
internal import CSSL
import Glibc

/// What the client and the server agreed on by ALPN.
enum NegotiatedProtocol: String {
    case http2 = "h2"
    case http1 = "http/1.1"
    /// The client sent no ALPN extension (a client that does and shares no protocol with us is
    /// refused during the handshake).
    case notNegotiated = "none"
}

/// An accepted TLS connection until its handshake ends. Owns the OpenSSL bufferevent (and with
/// it the `SSL` and the socket: BEV_OPT_CLOSE_ON_FREE) and either frees it in `close()` — the
/// handshake failed, timed out, or the server is closing — or hands it to the server once the
/// handshake is done, which gives it to the connection type ALPN chose. Loop-confined.
final class TLSHandshake {
    private let context: ServerContext
    /// Told when the handshake ends either way; weak because the server may be gone first.
    private weak var server: HTTPServer?
    private var bufferEvent: OpaquePointer?

    init(fd: Int32, tls: TLSContext, context: ServerContext, server: HTTPServer) throws {
        context.loop.assertInLoop()
        self.context = context
        self.server = server
        guard let ssl = SSL_new(tls.pointer) else {
            Glibc.close(fd)
            throw HTTPServerError("SSL_new: \(TLSContext.drainErrors())")
        }
        // On failure libevent has already freed the SSL and closed the socket (its error path frees
        // the half-made bufferevent, which owns both); freeing them here as well would free twice.
        guard let bev = bufferevent_openssl_socket_new(context.loop.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                       Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)) else {
            throw HTTPServerError("bufferevent_openssl_socket_new")
        }
        bufferEvent = bev
        var nodelay: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &nodelay, socklen_t(MemoryLayout<Int32>.size))
        // No read or write callback: bytes decrypted before the connection takes over wait in the
        // input buffer for it (HTTP2Connection.start reads what is already there).
        bufferevent_setcb(bev, nil, nil, { _, events, arg in
            guard let arg else { return }
            Unmanaged<TLSHandshake>.fromOpaque(arg).takeUnretainedValue().event(events)
        }, Unmanaged.passUnretained(self).toOpaque())
        // A peer that connects and never finishes its handshake must not hold a socket for long.
        var limit = timeval(tv_sec: context.configuration.tlsHandshakeTimeoutSeconds, tv_usec: 0)
        var writeLimit = limit
        guard bufferevent_set_timeouts(bev, &limit, &writeLimit) == 0 else {
            close()
            throw HTTPServerError("bufferevent_set_timeouts")
        }
    }

    deinit {
        precondition(bufferEvent == nil, "TLSHandshake freed while it still owns its socket")
    }

    private func event(_ events: Int16) {
        guard let bev = bufferEvent else { return }
        if events & Int16(BEV_EVENT_CONNECTED) != 0, let server {
            bufferEvent = nil
            server.handshakeFinished(self, bufferEvent: bev, negotiated: Self.negotiatedProtocol(bev))
            return
        }
        context.logger.debug("TLS handshake failed", metadata: ["reason": "\(Self.reason(events, bev))"])
        close()
    }

    /// The one teardown path before the handover: frees the bufferevent, its SSL and its socket.
    func close() {
        guard let bev = bufferEvent else { return }
        bufferEvent = nil
        bufferevent_free(bev)
        server?.handshakeClosed(self)
    }

    private static func negotiatedProtocol(_ bev: OpaquePointer) -> NegotiatedProtocol {
        guard let ssl = bufferevent_openssl_get_ssl(bev) else { return .notNegotiated }
        var name: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &name, &length)
        guard let name, length > 0 else { return .notNegotiated }
        return NegotiatedProtocol(rawValue: String(decoding: UnsafeBufferPointer(start: name, count: Int(length)), as: UTF8.self))
            ?? .notNegotiated
    }

    private static func reason(_ events: Int16, _ bev: OpaquePointer) -> String {
        if events & Int16(BEV_EVENT_TIMEOUT) != 0 { return "timed out" }
        if events & Int16(BEV_EVENT_EOF) != 0 { return "peer closed the connection" }
        var reasons: [String] = []
        while case let code = bufferevent_get_openssl_error(bev), code != 0 { reasons.append(TLSContext.describe(code)) }
        // No OpenSSL error: the socket failed underneath (a reset, say).
        return reasons.isEmpty ? String(cString: strerror(errno)) : reasons.joined(separator: "; ")
    }
}
