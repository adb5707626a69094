import Glibc

/// What a `RawTCPClient` call could not do.
public struct TCPClientFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A blocking TCP client of 127.0.0.1 whose every read and write waits at most 20 s; closed when
/// dropped. For tests that must control each byte (slow senders, unfinished requests).
public final class RawTCPClient {
    private let fd: Int32

    public init(port: Int) throws {
        fd = try connectedLoopbackSocket(port: port)
    }

    deinit { Glibc.close(fd) }

    /// Writes all of `bytes`; false once the peer has gone.
    public func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        // Bounded: every pass sends something or returns.
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }

    /// What has arrived so far, without waiting.
    public func readAvailable() -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { break }
            received += buffer[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// True when the peer has closed (EOF or reset), without waiting.
    public func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
        return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Reads until the peer ends the stream (a reset counts as the end).
    public func readUntilClosed() throws -> String { try read(until: nil) }

    /// Reads until what arrived ends with `suffix`.
    public func readUntil(_ suffix: String) throws -> String { try read(until: suffix) }

    private func read(until suffix: String?) throws -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == ECONNRESET, suffix == nil { break }
            guard count >= 0 else { throw TCPClientFailure("recv: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            received += buffer[..<count]
            if let suffix, received.count >= suffix.utf8.count, received.suffix(suffix.utf8.count).elementsEqual(suffix.utf8) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// A blocking TCP socket connected to 127.0.0.1:`port` whose every read and write waits at most
/// 20 s; the caller closes it. Every raw test client starts here.
public func connectedLoopbackSocket(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TCPClientFailure("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    } && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0
        && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0
    guard connected else {
        let reason = String(cString: strerror(errno))
        Glibc.close(fd)
        throw TCPClientFailure("connect to 127.0.0.1:\(port): \(reason)")
    }
    return fd
}
