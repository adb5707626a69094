internal import CLibevent
import EventLoop
import Glibc

/// The protocol a connection speaks, told by its first bytes on cleartext (or by ALPN over TLS).
enum WireProtocol {
    case http1
    case http2
}

/// Holds a freshly accepted cleartext connection until its first bytes tell HTTP/2 (the client
/// preface) from HTTP/1.x, then hands its socket, with those bytes still unread in the input
/// buffer, to the server to serve as that protocol. A peer that sends nothing is closed after the
/// idle timeout, one that trickles a prefix of the preface after the request-arrival bound: a
/// deadline, which more bytes do not extend. Loop-confined.
final class ConnectionSniffer: ServerConnection {
    private let socket: ConnectionSocket
    private let context: ServerContext
    private weak var server: HTTPServer?
    private var isClosed = false
    private let deadline: Timer
    /// Some bytes have arrived (a prefix of the preface): the deadline is the arrival bound now.
    private var hasBytes = false

    /// RFC 9113 §3.4: every HTTP/2 client with prior knowledge starts with these 24 bytes.
    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    init(socket: ConnectionSocket, context: ServerContext, server: HTTPServer) throws {
        self.socket = socket
        self.context = context
        self.server = server
        deadline = try Timer(loop: context.loop)
    }

    func start() throws {
        let idleSeconds = context.configuration.idleTimeoutSeconds
        try socket.attach(self, idleSeconds: idleSeconds)
        try deadline.arm(milliseconds: idleSeconds * 1000) { [weak self] in self?.close() }
    }

    func readable() {
        guard let input = socket.input else { return }
        let length = min(evbuffer_get_length(input), Self.preface.count)
        guard length > 0, let data = evbuffer_pullup(input, length) else { return }
        let matches = Self.preface.withUnsafeBufferPointer { memcmp(data, $0.baseAddress!, length) == 0 }
        // A prefix of the preface so far: wait for the rest, within the arrival bound.
        if matches, length < Self.preface.count {
            guard !hasBytes else { return }
            hasBytes = true
            let seconds = min(context.configuration.requestArrivalTimeoutSeconds, context.configuration.idleTimeoutSeconds)
            do {
                try deadline.arm(milliseconds: seconds * 1000) { [weak self] in self?.close() }
            } catch {
                close()
            }
            return
        }
        guard let server else { return close() }
        isClosed = true
        deadline.cancel()
        server.handOver(socket, from: self, speaking: matches ? .http2 : .http1)
    }

    func writable() {}

    var isAwaitingHandler: Bool { false }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        deadline.cancel()
        socket.close()
        server?.connectionClosed(self)
    }

    /// No request is complete yet (an idle probe, or a preface still arriving): nothing to finish.
    func goAway() { close() }
}
