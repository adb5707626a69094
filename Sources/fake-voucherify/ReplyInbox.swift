import CLibevent
import Foundation
import Glibc

/// The one way other threads hand answers back to the event loop. `post` queues `(id, response)`
/// under a lock and writes a byte to a pipe; a libevent read event on that pipe wakes the loop,
/// which drains the queue and passes each answer to `arrived`. Owned by `EventServer`, which
/// calls `close()` in its teardown (the single place the pipe and the event are freed).
final class ReplyInbox: @unchecked Sendable {  // every mutable field is guarded by `lock`
    private let lock = NSLock()
    private var queued: [(id: UInt64, response: OutgoingResponse)] = []
    private var readFD: Int32 = -1
    private var writeFD: Int32 = -1
    private var event: OpaquePointer?
    /// Loop thread only.
    private let arrived: (UInt64, OutgoingResponse) -> Void

    init(base: OpaquePointer, arrived: @escaping (UInt64, OutgoingResponse) -> Void) throws {
        self.arrived = arrived
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw StartupError(description: "cannot create the reply pipe: \(String(cString: strerror(errno)))")
        }
        readFD = fds[0]
        writeFD = fds[1]
        // Non-blocking: neither a full pipe nor an empty one may ever stall a thread (fcntl underneath).
        for fd in fds {
            guard evutil_make_socket_nonblocking(fd) == 0, evutil_make_socket_closeonexec(fd) == 0 else {
                throw StartupError(description: "cannot set up the reply pipe: \(String(cString: strerror(errno)))")  // deinit closes it
            }
        }
        guard let event = event_new(base, readFD, Int16(EV_READ | EV_PERSIST), { _, _, arg in
            guard let arg else { return }
            Unmanaged<ReplyInbox>.fromOpaque(arg).takeUnretainedValue().wake()
        }, Unmanaged.passUnretained(self).toOpaque()) else {
            throw StartupError(description: "cannot create the reply pipe event")  // deinit closes the pipe
        }
        self.event = event
        guard event_add(event, nil) == 0 else { throw StartupError(description: "cannot watch the reply pipe") }
    }

    deinit {
        close()
    }

    /// Any thread. Answers posted after `close()` are dropped: the server is shutting down.
    func post(id: UInt64, response: OutgoingResponse) {
        lock.lock()
        defer { lock.unlock() }
        guard writeFD >= 0 else { return }
        queued.append((id, response))
        // One unread byte is enough to wake the loop, which takes everything queued by then.
        guard queued.count == 1 else { return }
        var byte: UInt8 = 1
        if write(writeFD, &byte, 1) != 1 && errno != EAGAIN {
            fputs("fake-voucherify: cannot wake the event loop: \(String(cString: strerror(errno)))\n", stderr)
        }
    }

    /// Frees the event and the pipe; safe to call twice. Loop thread, before the event base is freed.
    func close() {
        lock.lock()
        let fds = (readFD, writeFD)
        readFD = -1
        writeFD = -1
        queued.removeAll()
        lock.unlock()
        if let event { event_free(event) }
        event = nil
        for fd in [fds.0, fds.1] where fd >= 0 { Glibc.close(fd) }
    }

    /// Loop thread: empties the pipe first, then the queue, so an answer posted in between is
    /// either taken now or has written a fresh byte that wakes the loop again.
    private func wake() {
        var scratch = [UInt8](repeating: 0, count: 64)
        while read(readFD, &scratch, scratch.count) > 0 {}
        lock.lock()
        let replies = queued
        queued.removeAll()
        lock.unlock()
        for reply in replies { arrived(reply.id, reply.response) }
    }
}
