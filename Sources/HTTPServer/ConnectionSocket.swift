internal import CLibevent
internal import CLibeventOpenSSL
internal import CSSL
import Glibc

/// One protocol's side of an accepted connection (HTTP/2, HTTP/1.1, or the sniffer that picks
/// between them). Its `ConnectionSocket` reports events here; the server holds it until `close`.
protocol ServerConnection: AnyObject {
    /// New bytes are in the socket's input buffer.
    func readable()
    /// The output buffer has drained.
    func writable()
    /// Some request is with the application and not yet answered: quiet input is then not idleness.
    var isAwaitingHandler: Bool { get }
    /// The one teardown path: cancels work in flight, closes the socket, tells the server.
    func close()
    /// Graceful stop: let requests in flight finish, take no new ones, then close.
    func goAway()
}

/// Owns one connection's libevent bufferevent, a plain socket's or an OpenSSL one (and with it
/// the `SSL`), and does what every connection type does with it: idle and write timeouts, the
/// owner's callbacks, pausing input, and the linger-close. Frees the bufferevent on one path,
/// `close()`. Loop-confined.
final class ConnectionSocket {
    private var bufferEvent: OpaquePointer?
    /// Strong: the owner holds this socket too, and `close()` (the owner's teardown calls it)
    /// drops this reference, which ends the cycle. Replaced when the sniffer hands over.
    private var owner: ServerConnection?
    /// Set by `closeAfterWriting`: input is discarded from then on.
    private(set) var isLingering = false
    private var isHalfClosed = false
    /// Set by `pauseInput`: reading is off on purpose, and no read timeout may turn it back on.
    private(set) var isInputPaused = false
    /// Output gathered by `stage` for one `flushStaged`: a whole batch of frames leaves in one
    /// system call, and libevent's write event (an epoll_ctl to arm, another to disarm) is only
    /// used for what the kernel does not take at once.
    private var staged: [UInt8] = []
    /// The descriptor `flushStaged` writes to directly; -1 over TLS, where OpenSSL must write.
    private let directFD: Int32

    /// Longest wait for the peer's EOF after our last answer, before the socket is closed anyway.
    private static let lingerSeconds = 2

    /// The peer's address, `ip:port` or `[v6]:port`, read once at accept (for logs).
    let peer: String

    /// Takes ownership of `bufferEvent` (freed by `close()`, including when `attach` fails).
    init(bufferEvent: OpaquePointer) {
        self.bufferEvent = bufferEvent
        peer = Self.peerAddress(of: bufferevent_getfd(bufferEvent))
        directFD = bufferevent_openssl_get_ssl(bufferEvent) == nil ? bufferevent_getfd(bufferEvent) : -1
        // The callbacks recover this socket (freed only after the bufferevent, in close()).
        bufferevent_setcb(bufferEvent, { _, arg in
            guard let arg else { return }
            // Not _withUnsafeGuaranteedRef: the owner may close and drop the last reference.
            Unmanaged<ConnectionSocket>.fromOpaque(arg).takeUnretainedValue().readable()
        }, { _, arg in
            guard let arg else { return }
            Unmanaged<ConnectionSocket>.fromOpaque(arg).takeUnretainedValue().writable()
        }, { _, events, arg in
            guard let arg else { return }
            Unmanaged<ConnectionSocket>.fromOpaque(arg).takeUnretainedValue().socketEvent(events)
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { close() }

    private static func peerAddress(of fd: Int32) -> String {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
        guard found else { return "" }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard rc == 0 else { return "" }
        func text(_ characters: [CChar]) -> String {
            String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let ip = text(host)
        return address.ss_family == sa_family_t(AF_INET6) ? "[\(ip)]:\(text(service))" : "\(ip):\(text(service))"
    }

    /// Routes events to `owner` from now on and (re)starts reading and writing with its timeouts:
    /// no input for `idleSeconds` closes an idle connection (see socketEvent); output the peer has
    /// not taken for that long closes it too.
    func attach(_ owner: ServerConnection, idleSeconds: Int) throws {
        guard let bufferEvent else { throw HTTPServerError("attaching to a closed socket") }
        self.owner = owner
        var idle = timeval(tv_sec: idleSeconds, tv_usec: 0)
        var stalled = idle
        guard bufferevent_set_timeouts(bufferEvent, &idle, &stalled) == 0 else { throw HTTPServerError("bufferevent_set_timeouts") }
        guard bufferevent_enable(bufferEvent, Int16(EV_READ | EV_WRITE)) == 0 else {
            throw HTTPServerError("watching the accepted socket (bufferevent_enable): \(String(cString: strerror(errno)))")
        }
    }

    /// Frees the bufferevent (closing the socket) and lets go of the owner. Idempotent.
    func close() {
        owner = nil
        staged = []
        if let bufferEvent { bufferevent_free(bufferEvent) }
        bufferEvent = nil
    }

    // MARK: buffers

    /// The input buffer (nil once closed).
    var input: OpaquePointer? { bufferEvent.map { bufferevent_get_input($0) } }

    /// Bytes queued for the peer (staged or buffered) and not yet taken by the kernel.
    var outputLength: Int { bufferEvent.map { staged.count + evbuffer_get_length(bufferevent_get_output($0)) } ?? 0 }

    /// Stops reading from the peer until `resumeInput` (a connection that parses one request at a
    /// time stays bounded). Not a read high-watermark: libevent 2.1.12's OpenSSL bufferevent stops
    /// at the watermark possibly mid-record and, once the input drains, waits for the socket to
    /// become readable again instead of taking what OpenSSL already decrypted, so a peer that
    /// has sent everything would wait for the idle timeout. Called from the owner's read
    /// callback, which libevent runs (deferred) after its own read loop has emptied OpenSSL's
    /// buffer, so nothing is left stranded there. False when libevent refused.
    func pauseInput() -> Bool {
        guard let bufferEvent, !isInputPaused, !isLingering else { return true }
        isInputPaused = true
        return bufferevent_disable(bufferEvent, Int16(EV_READ)) == 0
    }

    /// Reads from the peer again after `pauseInput` (restarting the idle timeout). Bytes already
    /// in the input buffer are not announced again: the owner parses them itself. False when
    /// libevent refused.
    func resumeInput() -> Bool {
        guard let bufferEvent, isInputPaused else { return true }
        isInputPaused = false
        return bufferevent_enable(bufferEvent, Int16(EV_READ)) == 0
    }

    /// Copies `length` bytes into the output buffer; false when closed or libevent refused.
    func write(_ bytes: UnsafeRawPointer, _ length: Int) -> Bool {
        guard let bufferEvent else { return false }
        return bufferevent_write(bufferEvent, bytes, length) == 0
    }

    /// Gathers `length` bytes for the next `flushStaged` (a copy: the caller's memory may go).
    func stage(_ bytes: UnsafeRawPointer, _ length: Int) {
        staged.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: length))
    }

    /// Sends what `stage` gathered: straight to the socket while nothing older waits in the output
    /// buffer (cleartext), and whatever the kernel does not take (or all of it, over TLS) to the
    /// bufferevent, which writes it when the socket allows and reports errors and the write
    /// timeout as for `write`. False when closed or libevent refused.
    func flushStaged() -> Bool {
        guard let bufferEvent else { return false }
        guard !staged.isEmpty else { return true }
        let output = bufferevent_get_output(bufferEvent)
        let queued = staged.withUnsafeBytes { bytes -> Bool in
            var offset = 0
            if directFD >= 0, evbuffer_get_length(output) == 0 {
                while offset < bytes.count {
                    let sent = Glibc.send(directFD, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                    if sent > 0 {
                        offset += sent
                    } else if sent < 0, errno == EINTR {
                        continue
                    } else {
                        // EAGAIN, or an error libevent meets again on its own write and reports.
                        break
                    }
                }
            }
            return offset == bytes.count || bufferevent_write(bufferEvent, bytes.baseAddress! + offset, bytes.count - offset) == 0
        }
        // A large batch (a big answer) does not keep its memory for the connection's lifetime.
        if staged.capacity > Self.stagedCapacityKept {
            staged = []
        } else {
            staged.removeAll(keepingCapacity: true)
        }
        return queued
    }

    private static let stagedCapacityKept = 64 * 1024

    /// Once the queued output is written, half-closes (shutdown SHUT_WR) and closes at the peer's
    /// EOF or after `lingerSeconds`, discarding input meanwhile. Closing at once with unread input
    /// would make the kernel reset the connection, which can destroy the answer still in flight.
    func closeAfterWriting() {
        guard !isLingering else { return }
        isLingering = true
        // Staged output goes first; if libevent refused it, the linger timeout still ends the connection.
        _ = flushStaged()
        if outputLength == 0 { halfClose() }
    }

    private func halfClose() {
        guard let bufferEvent, !isHalfClosed else { return }
        isHalfClosed = true
        isInputPaused = false
        // TLS: close_notify first, so the peer can tell our end of the stream from a truncation.
        // Written straight to the socket (the output buffer is empty here); 0 means sent and the
        // peer's own close_notify not yet seen, which the linger below reads (as EOF). Another
        // failure (a peer already gone) leaves an unannounced close, no worse than cleartext.
        var endStream = true
        if let ssl = bufferevent_openssl_get_ssl(bufferEvent), case let rc = SSL_shutdown(ssl), rc < 0 {
            // A full socket buffer: part of the alert record may be in the socket and the rest
            // in OpenSSL, which nothing here retries. A FIN right behind it would end the stream
            // on a cut record, so the TCP side stays open: the peer, which has its whole answer,
            // closes first, or the linger timeout closes.
            endStream = SSL_get_error(ssl, rc) != SSL_ERROR_WANT_WRITE
            ERR_clear_error()
        }
        var linger = timeval(tv_sec: Self.lingerSeconds, tv_usec: 0)
        let lingering = (!endStream || shutdown(bufferevent_getfd(bufferEvent), Int32(SHUT_WR)) == 0)
            && bufferevent_set_timeouts(bufferEvent, &linger, nil) == 0
            && bufferevent_enable(bufferEvent, Int16(EV_READ)) == 0
        if !lingering { owner?.close() }
    }

    // MARK: events

    private func readable() {
        guard isLingering else {
            owner?.readable()
            return
        }
        if let input, evbuffer_drain(input, evbuffer_get_length(input)) != 0 { owner?.close() }
    }

    private func writable() {
        guard isLingering else {
            owner?.writable()
            return
        }
        if outputLength == 0 { halfClose() }
    }

    private func socketEvent(_ events: Int16) {
        guard let owner else { return }
        let readTimeout = Int16(BEV_EVENT_TIMEOUT | BEV_EVENT_READING)
        if !isLingering, events & readTimeout == readTimeout, events & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR) == 0 {
            // Paused: the owner turned reading off (the timeout was queued before it did), so the
            // quiet is its own doing, and reading must stay off until it resumes.
            if isInputPaused { return }
            // Quiet input while the application works on a request (a WarmMembers call runs for
            // minutes), or while an answer is still going out, is not idleness: keep reading
            // (libevent stopped when the timeout fired). A peer that stops taking our output
            // meets the write timeout instead.
            if let bufferEvent, owner.isAwaitingHandler || outputLength > 0 {
                if bufferevent_enable(bufferEvent, Int16(EV_READ)) != 0 { owner.close() }
                return
            }
        }
        if isLingering, !isHalfClosed, events & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR) == Int16(BEV_EVENT_EOF), outputLength > 0 {
            // The peer ended its side after its request (HTTP/1.0, `nc -N`) and waits for the
            // answer still queued: libevent stopped reading at the EOF, the writing goes on, and
            // writable() half-closes once it is done. The write timeout bounds the wait.
            return
        }
        if events & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 { owner.close() }
    }
}
