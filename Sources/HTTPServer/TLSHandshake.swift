internal import CLibevent
internal import CLibeventOpenSSL
internal import CSSL
import EventLoop
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
/// handshake failed, missed its deadline, or the server is closing — or hands it to the server
/// once the handshake is done, which gives it to the connection type ALPN chose. Loop-confined.
final class TLSHandshake {
    private let context: ServerContext
    /// Told when the handshake ends either way; weak because the server may be gone first.
    private weak var server: HTTPServer?
    private var bufferEvent: OpaquePointer?
    /// Closes the handshake `tlsHandshakeTimeoutSeconds` after the accept, however the peer
    /// trickles its bytes (a bufferevent timeout would restart on each one). Cancelled when the
    /// handshake ends either way.
    private var deadline: Timer?

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
        // No read or write callback: bytes decrypted before the connection takes over wait in the
        // input buffer for it (HTTPServer.serve and sniff have the new owner read what is there).
        bufferevent_setcb(bev, nil, nil, { _, events, arg in
            guard let arg else { return }
            Unmanaged<TLSHandshake>.fromOpaque(arg).takeUnretainedValue().event(events)
        }, Unmanaged.passUnretained(self).toOpaque())
        // A peer that connects and never finishes its handshake must not hold a socket for long.
        // Weak: the server's table owns the handshake; the armed timer only holds itself.
        let seconds = context.configuration.tlsHandshakeTimeoutSeconds
        do {
            deadline = try Timer.schedule(on: context.loop, after: seconds * 1000) { [weak self] in
                self?.missedDeadline(seconds)
            }
        } catch {
            close()
            throw error
        }
    }

    deinit {
        precondition(bufferEvent == nil, "TLSHandshake freed while it still owns its socket")
    }

    private func event(_ events: Int16) {
        guard let bev = bufferEvent else { return }
        if events & Int16(BEV_EVENT_CONNECTED) != 0, let server {
            bufferEvent = nil
            deadline?.cancel()
            server.handshakeFinished(self, bufferEvent: bev, negotiated: Self.negotiatedProtocol(bev))
            return
        }
        context.logger.debug("TLS handshake failed", metadata: ["reason": "\(Self.reason(events, bev))"])
        close()
    }

    private func missedDeadline(_ seconds: Int) {
        context.logger.debug("TLS handshake failed", metadata: ["reason": "not finished within \(seconds) s of the accept"])
        close()
    }

    /// The one teardown path before the handover: frees the bufferevent, its SSL and its socket.
    func close() {
        guard let bev = bufferEvent else { return }
        bufferEvent = nil
        deadline?.cancel()
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
        if events & Int16(BEV_EVENT_EOF) != 0 { return "peer closed the connection" }
        var reasons: [String] = []
        while case let code = bufferevent_get_openssl_error(bev), code != 0 { reasons.append(TLSContext.describe(code)) }
        // No OpenSSL error: the socket failed underneath (a reset, say).
        return reasons.isEmpty ? String(cString: strerror(errno)) : reasons.joined(separator: "; ")
    }
}
