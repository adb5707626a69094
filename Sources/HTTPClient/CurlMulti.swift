internal import CCurl
internal import CShims
import EventLoop

public struct CurlError: Error, CustomStringConvertible {
    public let description: String
    init(_ call: String, code: Int32) {
        description = "\(call) failed (\(code))"
    }
}

/// Process-wide libcurl set-up. Call once, before any thread starts (libcurl requires it).
public enum Curl {
    public static func globalInit() throws {
        let rc = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        guard rc == CURLE_OK else { throw CurlError("curl_global_init", code: Int32(rc.rawValue)) }
    }
}

/// One curl multi handle driven by a loop (curl's multi_socket API): curl says which sockets and
/// which timeout it waits for, the loop tells curl when they are ready. Loop-confined.
///
/// At most `maxConcurrentTransfers` transfers are handed to curl at once; the others wait here,
/// first come first served. curl would queue them itself (behind CURLMOPT_MAX_HOST_CONNECTIONS),
/// but with their total timeouts already running: a burst of 1,000 requests behind 32
/// connections then failed at the timeout, most of it never sent. Waiting here, a request's
/// timeout starts only when it is handed to curl, and its `queueDeadline` bounds the wait.
public final class CurlMulti {
    public let loop: Loop
    public let maxConcurrentTransfers: Int
    private let multi: UnsafeMutableRawPointer
    /// curl's own timer (CURLMOPT_TIMERFUNCTION).
    private var timer: Timer
    /// Fires at the earliest queue deadline among the waiting transfers.
    private var queueTimer: Timer
    /// When `queueTimer` is due; nil while disarmed.
    private var queueTimerDue: Int64?
    /// Watchers and the timers capture `self` unowned; `deinit` drops them first.
    private var watchers: [Int32: IOWatcher] = [:]
    /// Handed to curl (their easy handles are in `multi`).
    private var running: [ObjectIdentifier: HTTPTransfer] = [:]
    /// Accepted but not handed to curl yet, oldest first.
    private var waiting = TransferQueue()

    public init(loop: Loop, maxConnectionsPerHost: Int = 32, maxConcurrentTransfers: Int = 32) throws {
        self.loop = loop
        self.maxConcurrentTransfers = max(1, maxConcurrentTransfers)
        guard let multi = curl_multi_init() else { throw CurlError("curl_multi_init", code: -1) }
        self.multi = multi
        do {
            timer = try Timer(loop: loop)
            queueTimer = try Timer(loop: loop)
        } catch {
            curl_multi_cleanup(multi)
            throw error
        }
        let me = Unmanaged.passUnretained(self).toOpaque()
        try check(pe_curl_multi_setopt_socket_function(multi) { _, fd, what, user, _ in
            guard let user else { return -1 }
            Unmanaged<CurlMulti>.fromOpaque(user).takeUnretainedValue().socketChanged(fd: fd, what: what)
            return 0
        }, "CURLMOPT_SOCKETFUNCTION")
        try check(pe_curl_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, me), "CURLMOPT_SOCKETDATA")
        try check(pe_curl_multi_setopt_timer_function(multi) { _, timeout, user in
            guard let user else { return 0 }
            Unmanaged<CurlMulti>.fromOpaque(user).takeUnretainedValue().timerChanged(milliseconds: timeout)
            return 0
        }, "CURLMOPT_TIMERFUNCTION")
        try check(pe_curl_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, me), "CURLMOPT_TIMERDATA")
        try check(pe_curl_multi_setopt_long(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX), "CURLMOPT_PIPELINING")
        try check(pe_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxConnectionsPerHost), "CURLMOPT_MAX_HOST_CONNECTIONS")
    }

    deinit {
        // curl may call back while handles are removed: point its callbacks nowhere first.
        _ = pe_curl_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, nil)
        _ = pe_curl_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, nil)
        for transfer in running.values {
            curl_multi_remove_handle(multi, transfer.easy)
        }
        timer.cancel()
        queueTimer.cancel()
        watchers.removeAll()
        curl_multi_cleanup(multi)
    }

    private func check(_ code: CURLMcode, _ what: String) throws {
        guard code == CURLM_OK else { throw CurlError(what, code: code.rawValue) }
    }

    /// Starts a transfer, or queues it behind the ones already running; its completion runs
    /// later on this loop, never from inside this call. Throws when the transfer cannot be set
    /// up (a bad option is a programming or config error).
    ///
    /// With `receiveBody`, a successful (2xx) response's body goes to it chunk by chunk, on this
    /// loop, as curl reads it, and the response's `body` stays empty: a download of any size
    /// never sits in memory here, and `maxResponseBytes` does not bound it (the receiver bounds
    /// what it keeps). Returning false stops the transfer, which then fails with `.aborted`. The
    /// bytes are valid only during the call. The receiver runs inside curl: it must not start or
    /// cancel transfers on this multi handle (curl refuses re-entry; it returns false to stop).
    /// Any other status's body is still collected, within `maxResponseBytes`, so an error body
    /// can be read.
    public func start(_ request: HTTPClientRequest, receiveBody: ((UnsafeRawBufferPointer) -> Bool)? = nil,
                      completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void) throws -> HTTPTransfer {
        loop.assertInLoop()
        let now = loop.monotonicMilliseconds
        let transfer = try HTTPTransfer(request: request, acceptedAt: now, bodyReceiver: receiveBody, completion: completion)
        // Behind others already waiting, or with its deadline already gone (it fails from the
        // queue, on a later turn), it waits.
        if waiting.isEmpty, running.count < maxConcurrentTransfers, !transfer.isQueueExpired(now: now) {
            try handToCurl(transfer, now: now)
        } else {
            waiting.append(transfer)
            if let expiry = transfer.queueExpiry { armQueueTimer(due: expiry) }
        }
        transfer.multi = self
        return transfer
    }

    /// Abandons every transfer, running or waiting (shutdown): their completions never run.
    public func cancelAll() {
        // Waiting ones first: each running one cancelled frees a slot a waiting one would take.
        for transfer in waiting.all + Array(running.values) { transfer.cancel() }
    }

    /// Abandons a transfer: its completion never runs. With HTTP/2 this resets only its stream.
    func cancel(_ transfer: HTTPTransfer) {
        guard detach(transfer) else { return }
        startWaiting()
    }

    /// The one way a transfer leaves this multi handle, whether it finished, was cancelled or
    /// timed out in the queue. True when it held one of curl's slots (now free).
    @discardableResult
    private func detach(_ transfer: HTTPTransfer) -> Bool {
        transfer.multi = nil
        if running.removeValue(forKey: ObjectIdentifier(transfer)) != nil {
            curl_multi_remove_handle(multi, transfer.easy)
            return true
        }
        waiting.remove(transfer)
        return false
    }

    private func handToCurl(_ transfer: HTTPTransfer, now: Int64) throws {
        try transfer.setTotalTimeout(now: now)
        try check(curl_multi_add_handle(multi, transfer.easy), "curl_multi_add_handle")
        running[ObjectIdentifier(transfer)] = transfer
    }

    /// Hands waiting transfers to curl, oldest first, while slots are free. One that can no
    /// longer be sent fails on the next tick: this runs inside other transfers' calls (`start`,
    /// `cancel`, a completion) and must not call back into their owners.
    private func startWaiting() {
        let now = loop.monotonicMilliseconds
        while running.count < maxConcurrentTransfers, let transfer = waiting.first {
            if transfer.isQueueExpired(now: now) {
                expire(transfer, now: now)
                continue
            }
            waiting.remove(transfer)
            do {
                try handToCurl(transfer, now: now)
            } catch {
                fail(transfer, .setup("\(error)"))
            }
        }
    }

    /// Its queue deadline came before a slot did.
    private func expire(_ transfer: HTTPTransfer, now: Int64) {
        fail(transfer, .queueTimedOut(waitedMilliseconds: Int(now - transfer.acceptedAt)))
    }

    /// Ends a transfer curl never ran; its completion runs on the next tick.
    private func fail(_ transfer: HTTPTransfer, _ error: HTTPClientError) {
        detach(transfer)
        loop.nextTick { transfer.fail(error) }
    }

    // MARK: queue deadlines

    /// Arms the queue timer for `due` unless it already fires no later.
    private func armQueueTimer(due: Int64) {
        if let queueTimerDue, queueTimerDue <= due { return }
        queueTimerDue = due
        let delay = due.subtractingReportingOverflow(loop.monotonicMilliseconds)
        do {
            try queueTimer.arm(milliseconds: delay.overflow ? 0 : Int(clamping: delay.partialValue)) { [unowned self] in
                expireWaiting()
            }
        } catch {
            // Without the timer, look again on every loop turn until the queue drains.
            loop.nextTick { [weak self] in self?.expireWaiting() }
        }
    }

    /// Fails every waiting transfer whose queue deadline has come; re-arms for the next one.
    private func expireWaiting() {
        queueTimerDue = nil
        let now = loop.monotonicMilliseconds
        for transfer in waiting.all where transfer.isQueueExpired(now: now) {
            expire(transfer, now: now)
        }
        if let next = waiting.all.compactMap(\.queueExpiry).min() { armQueueTimer(due: next) }
    }

    // MARK: curl -> loop

    private func socketChanged(fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            watchers.removeValue(forKey: fd)
            return
        }
        let watcher = watchers[fd] ?? IOWatcher(loop: loop, fd: fd) { [unowned self] ready in
            var mask: Int32 = 0
            if ready.contains(.read) { mask |= CURL_CSELECT_IN }
            if ready.contains(.write) { mask |= CURL_CSELECT_OUT }
            drive(fd: fd, mask: mask)
        }
        watchers[fd] = watcher
        var interest: IOWatcher.Interest = []
        if what & CURL_POLL_IN != 0 { interest.insert(.read) }
        if what & CURL_POLL_OUT != 0 { interest.insert(.write) }
        do {
            try watcher.watch(interest)
        } catch {
            // Without a watcher curl would wait forever; its own timeouts end the transfer.
            watchers.removeValue(forKey: fd)
        }
    }

    /// Never fails towards curl: a -1 from this callback marks the whole multi handle dead for
    /// good. If the timer cannot be armed, curl is driven on the next loop turn instead and asked
    /// again for its timeout (it calls back only when that changes), so no transfer's own
    /// timeout is lost.
    private func timerChanged(milliseconds: Int) {
        guard milliseconds >= 0 else { return timer.cancel() }
        // Never call back into curl from its own callback: run on the next loop turn at least.
        do {
            try timer.arm(milliseconds: milliseconds) { [unowned self] in drive(fd: CURL_SOCKET_BAD, mask: 0) }
        } catch {
            loop.nextTick { [weak self] in
                guard let self else { return }
                drive(fd: CURL_SOCKET_BAD, mask: 0)
                var next = -1
                if curl_multi_timeout(multi, &next) == CURLM_OK { timerChanged(milliseconds: next) }
            }
        }
    }

    // MARK: loop -> curl

    private func drive(fd: Int32, mask: Int32) {
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, fd, mask, &running)
        collectFinished()
    }

    private func collectFinished() {
        var pending: Int32 = 0
        while let message = curl_multi_info_read(multi, &pending) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let result = message.pointee.data.result
            var privatePointer: UnsafeMutableRawPointer?
            guard pe_curl_easy_getinfo_pointer(easy, CURLINFO_PRIVATE, &privatePointer) == CURLE_OK,
                  let privatePointer else { continue }
            let transfer = Unmanaged<HTTPTransfer>.fromOpaque(privatePointer).takeUnretainedValue()
            transfer.retireConnection(after: result) { socket in
                running.values.contains { $0 !== transfer && $0.activeSocket == socket }
            }
            detach(transfer)
            transfer.finish(result)
        }
        startWaiting()
    }
}

/// The transfers waiting for a slot, oldest first. Removal from the middle (a cancel, a queue
/// deadline) is a linear search: the queue is bounded by what one worker has in flight.
private struct TransferQueue {
    private var items: [HTTPTransfer] = []
    /// Index of the oldest; the consumed prefix is dropped once it is large.
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var first: HTTPTransfer? { isEmpty ? nil : items[head] }
    /// A copy, safe to iterate while transfers leave the queue.
    var all: [HTTPTransfer] { Array(items[head...]) }

    mutating func append(_ transfer: HTTPTransfer) {
        items.append(transfer)
    }

    mutating func remove(_ transfer: HTTPTransfer) {
        guard let index = items[head...].firstIndex(where: { $0 === transfer }) else { return }
        if index == head {
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 64, head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
        } else {
            items.remove(at: index)
        }
    }
}
