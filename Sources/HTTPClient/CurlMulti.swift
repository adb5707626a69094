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
public final class CurlMulti {
    public let loop: Loop
    private let multi: UnsafeMutableRawPointer
    private var timer: Timer
    /// Watchers and the timer capture `self` unowned; `deinit` drops them first.
    private var watchers: [Int32: IOWatcher] = [:]
    private var transfers: [ObjectIdentifier: HTTPTransfer] = [:]

    public init(loop: Loop, maxConnectionsPerHost: Int = 32) throws {
        self.loop = loop
        guard let multi = curl_multi_init() else { throw CurlError("curl_multi_init", code: -1) }
        self.multi = multi
        do {
            timer = try Timer(loop: loop)
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
        for transfer in transfers.values {
            curl_multi_remove_handle(multi, transfer.easy)
        }
        timer.cancel()
        watchers.removeAll()
        curl_multi_cleanup(multi)
    }

    private func check(_ code: CURLMcode, _ what: String) throws {
        guard code == CURLM_OK else { throw CurlError(what, code: code.rawValue) }
    }

    /// Starts a transfer; its completion runs later on this loop, never from inside this call.
    /// Throws when the transfer cannot be set up (a bad option is a programming or config error).
    public func start(_ request: HTTPClientRequest, completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void) throws -> HTTPTransfer {
        loop.assertInLoop()
        let transfer = try HTTPTransfer(request: request, completion: completion)
        try check(curl_multi_add_handle(multi, transfer.easy), "curl_multi_add_handle")
        transfer.multi = self
        transfers[ObjectIdentifier(transfer)] = transfer
        return transfer
    }

    /// Abandons every transfer in flight (shutdown): their completions never run.
    public func cancelAll() {
        for transfer in Array(transfers.values) { transfer.cancel() }
    }

    /// Abandons a transfer: its completion never runs. With HTTP/2 this resets only its stream.
    func cancel(_ transfer: HTTPTransfer) {
        guard transfers.removeValue(forKey: ObjectIdentifier(transfer)) != nil else { return }
        curl_multi_remove_handle(multi, transfer.easy)
        transfer.multi = nil
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
            transfers.removeValue(forKey: ObjectIdentifier(transfer))
            curl_multi_remove_handle(multi, easy)
            transfer.multi = nil
            transfer.finish(result)
        }
    }
}
