internal import CLibevent
import Glibc

/// The protocol a connection speaks, told by its first bytes on cleartext (or by ALPN over TLS).
enum WireProtocol {
    case http1
    case http2
}

/// Holds a freshly accepted cleartext connection until its first bytes tell HTTP/2 (the client
/// preface) from HTTP/1.x, then hands its socket, with those bytes still unread in the input
/// buffer, to the server to serve as that protocol. Loop-confined.
final class ConnectionSniffer: ServerConnection {
    private let socket: ConnectionSocket
    private weak var server: HTTPServer?
    private var isClosed = false

    /// RFC 9113 §3.4: every HTTP/2 client with prior knowledge starts with these 24 bytes.
    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    init(socket: ConnectionSocket, server: HTTPServer) {
        self.socket = socket
        self.server = server
    }

    func start(idleSeconds: Int) throws {
        try socket.attach(self, idleSeconds: idleSeconds)
    }

    func readable() {
        guard let input = socket.input else { return }
        let length = min(evbuffer_get_length(input), Self.preface.count)
        guard length > 0, let data = evbuffer_pullup(input, length) else { return }
        let matches = Self.preface.withUnsafeBufferPointer { memcmp(data, $0.baseAddress!, length) == 0 }
        // A prefix of the preface so far: wait for the rest (or the idle timeout).
        if matches, length < Self.preface.count { return }
        guard let server else { return close() }
        isClosed = true
        server.handOver(socket, from: self, speaking: matches ? .http2 : .http1)
    }

    func writable() {}

    var isAwaitingHandler: Bool { false }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        socket.close()
        server?.connectionClosed(self)
    }

    /// Nothing was asked yet: nothing to finish.
    func goAway() { close() }
}
