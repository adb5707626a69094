import EventLoop
import Foundation
import HTTPClient

/// The project's own libcurl client (the one that calls Voucherify), speaking h2c to the service
/// on its own loop thread. Lets a test reset one stream while the connection stays up.
final class H2Client: @unchecked Sendable {
    private let group: LoopGroup
    /// Loop-confined while the loop runs.
    private var multi: CurlMulti?
    private var loop: Loop { group.loops[0] }

    init() throws {
        _ = curlReady
        group = try LoopGroup(count: 1)
        try group.start()
        multi = try loop.runAndWait { try CurlMulti(loop: self.loop) }
    }

    /// The loop stops first; the curl handle is then freed here, with no loop running.
    deinit {
        group.stopAndWait()
    }

    private func request(_ method: String, _ url: String, json: String?) -> HTTPClientRequest {
        HTTPClientRequest(method: method, url: url, headers: json == nil ? [] : [("content-type", "application/json")],
                          body: Array((json ?? "").utf8), version: .http2PriorKnowledge,
                          totalTimeoutMilliseconds: 30_000)
    }

    /// Sends and waits for the answer.
    func send(_ method: String, _ url: String, json: String? = nil) throws -> HTTPClientResponse {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var outcome: Result<HTTPClientResponse, HTTPClientError>?
        let request = request(method, url, json: json)
        try loop.runAndWait {
            _ = try self.multi?.start(request) { result in
                outcome = result
                done.signal()
            }
        }
        guard done.wait(timeout: .now() + 60) == .success, let outcome else { throw TestFailure("no answer from \(url)") }
        return try outcome.get()
    }

    /// Starts a request and resets its stream (RST_STREAM) after `milliseconds`; true if it was
    /// still in flight then.
    func sendAndReset(_ method: String, _ url: String, json: String?, afterMilliseconds milliseconds: Int) throws -> Bool {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var answeredEarly = false
        let request = request(method, url, json: json)
        try loop.runAndWait {
            guard let transfer = try self.multi?.start(request, completion: { _ in answeredEarly = true }) else { return }
            try Timer.schedule(on: self.loop, after: milliseconds) {
                transfer.cancel()
                done.signal()
            }
        }
        _ = done.wait(timeout: .now() + 60)
        return !answeredEarly
    }

    /// Starts a request and resets its stream (RST_STREAM) once `condition` holds (polled from
    /// this thread); true if it was still unanswered then.
    func sendAndReset(_ method: String, _ url: String, json: String?, once condition: () throws -> Bool) throws -> Bool {
        nonisolated(unsafe) var answered = false  // loop thread only
        let request = request(method, url, json: json)
        let loop = loop
        let transfer = try loop.runAndWait { try self.multi.map { LoopBound(try $0.start(request) { _ in answered = true }, loop: loop) } }
        try waitUntil("the condition for resetting \(url)", condition)
        return try loop.runAndWait {
            transfer?.value.cancel()
            return !answered
        }
    }
}
