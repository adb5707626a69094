import Foundation
import Synchronization

/// A bare HTTP/2 peer (h2c, prior knowledge) on 127.0.0.1 whose first connection hangs: it
/// completes the SETTINGS exchange, then never answers. Later connections answer every request
/// with an empty 200. Just enough HTTP/2 for libcurl, one thread per connection; the threads
/// end when the client closes its side.
final class HangingHTTP2Peer: Sendable {
    let port: Int
    private let listener: Int32
    private let accepted = Atomic<Int>(0)

    /// Connections accepted so far.
    var connections: Int { accepted.load(ordering: .acquiring) }

    init() throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = listener
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard listening else {
            close(fd)
            throw TestFailure("cannot listen on 127.0.0.1")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "hanging-http2-peer"
        thread.start()
    }

    /// Wakes the accept loop (shutdown makes a blocked accept fail), which then closes the socket.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
    }

    private func acceptLoop() {
        defer { close(listener) }
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let hangs = accepted.add(1, ordering: .acquiringAndReleasing).newValue == 1
            Thread { Self.serve(connection, hangs: hangs) }.start()
        }
    }

    private static func serve(_ connection: Int32, hangs: Bool) {
        defer { close(connection) }
        send(frame(type: 4, flags: 0, stream: 0), to: connection)  // our SETTINGS
        let preface = 24
        var received: [UInt8] = []
        var prefaceSeen = false
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = read(connection, &chunk, chunk.count)
            guard count > 0 else { return }
            received += chunk[..<count]
            if !prefaceSeen {
                guard received.count >= preface else { continue }
                received.removeFirst(preface)
                prefaceSeen = true
            }
            while received.count >= 9 {
                let length = Int(received[0]) << 16 | Int(received[1]) << 8 | Int(received[2])
                guard received.count >= 9 + length else { break }
                let (type, flags) = (received[3], received[4])
                let stream = received[5...8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
                received.removeFirst(9 + length)
                if type == 4, flags & 1 == 0 { send(frame(type: 4, flags: 1, stream: 0), to: connection) }  // SETTINGS ACK
                // HEADERS: answer `:status: 200` (HPACK static index 8), END_STREAM | END_HEADERS.
                if type == 1, !hangs { send(frame(type: 1, flags: 0x5, stream: stream, payload: [0x88]), to: connection) }
            }
        }
    }

    private static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8] = []) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
                UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    private static func send(_ bytes: [UInt8], to connection: Int32) {
        _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
    }
}
