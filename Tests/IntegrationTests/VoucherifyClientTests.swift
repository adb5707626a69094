import EventLoop
import ExpiryDomain
import Foundation
import HTTPClient
import Logging
import Synchronization
import Testing
import Voucherify

/// Admits every call and remembers what it was asked and told. Loop-confined: tests read it
/// through `VoucherifyClient.admissionRecord()`.
final class RecordingAdmission: UpstreamAdmission {
    var admits = 0
    var observations: [RateLimitObservation] = []

    func admit(deadline: Int64, completion: @escaping (Result<Void, VoucherifyError>) -> Void) {
        admits += 1
        completion(.success(()))
    }

    func observe(_ observation: RateLimitObservation) {
        observations.append(observation)
    }
}

/// The project's curl client on its own loop thread.
final class LoopCurl: @unchecked Sendable {
    private let group: LoopGroup
    var loop: Loop { group.loops[0] }
    let curl: LoopBound<CurlMulti>

    init(maxConcurrentTransfers: Int = 32) throws {
        _ = curlReady
        group = try LoopGroup(count: 1)
        try group.start()
        let loop = group.loops[0]
        curl = try loop.runAndWait { LoopBound(try CurlMulti(loop: loop, maxConcurrentTransfers: maxConcurrentTransfers), loop: loop) }
    }

    /// The loop stops first; the curl handle is then freed here, with no loop running.
    deinit {
        group.stopAndWait()
    }

    /// Starts `requests` together (in order); `cancel` names the ones cancelled right after.
    /// Results arrive in `results`, keyed by index.
    func start(_ requests: [HTTPClientRequest], cancel: Set<Int> = [], into results: TransferResults) throws {
        try loop.runAndWait { [curl, loop] in
            let startedAt = loop.monotonicMilliseconds
            for (index, request) in requests.enumerated() {
                let transfer = try curl.value.start(request) { result in
                    results.record(index, result, elapsedMilliseconds: loop.monotonicMilliseconds - startedAt)
                }
                if cancel.contains(index) { transfer.cancel() }
            }
        }
    }

    /// Sends one request and waits for its result.
    func send(_ request: HTTPClientRequest) throws -> Result<HTTPClientResponse, HTTPClientError> {
        let results = TransferResults()
        try start([request], into: results)
        try waitUntil("\(request.url) is answered") { results[0] != nil }
        guard let result = results[0]?.result else { throw TestFailure("no result for \(request.url)") }
        return result
    }
}

/// `VoucherifyAPI` on a `LoopCurl`, talking to a fresh fake Voucherify.
final class VoucherifyClient: @unchecked Sendable {
    /// Taken before the fake starts, given back after it stopped (a light stack, but its
    /// timings should not compete with whole services).
    private let permit = StackPermit()
    let fake: FakeVoucherify
    let shared: VoucherifyShared
    /// What `onCall` reported, in order.
    let outcomes = OutcomeLog()
    let http: LoopCurl
    var loop: Loop { http.loop }
    private let api: LoopBound<VoucherifyAPI>
    private let admission: LoopBound<RecordingAdmission>

    init(circuit: CircuitBreaker.Policy = CircuitBreaker.Policy(), maxConcurrentTransfers: Int = 32) throws {
        fake = try FakeVoucherify()
        shared = VoucherifyShared(circuitBreaker: CircuitBreaker(policy: circuit),
                                  onCall: { [outcomes] outcome, _ in outcomes.append(outcome) })
        let configuration = try VoucherifyConfiguration(baseURL: fake.baseURL, appID: FakeVoucherify.appID,
                                                        appToken: FakeVoucherify.appToken)
        var logger = Logger(label: "voucherify-client-test") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .critical
        http = try LoopCurl(maxConcurrentTransfers: maxConcurrentTransfers)
        let loop = http.loop
        let (curl, shared) = (http.curl, shared)
        let built = try loop.runAndWait {
            (LoopBound(VoucherifyAPI(curl: curl.value, configuration: configuration, shared: shared, logger: logger), loop: loop),
             LoopBound(RecordingAdmission(), loop: loop))
        }
        api = built.0
        admission = built.1
    }

    deinit {
        fake.stop()
    }

    /// Reads one member of the fake's campaign and waits for the answer.
    func read(_ member: String, deadlineIn milliseconds: Int64 = 10_000) throws -> Result<[PointsBucket], VoucherifyError> {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var outcome: Result<[PointsBucket], VoucherifyError>?  // written on the loop before `done`
        try loop.runAndWait { [api, admission, loop] in
            api.value.fetchMemberBuckets(campaign: FakeVoucherify.campaignID, member: member,
                                         deadline: loop.monotonicMilliseconds + milliseconds, admission: admission.value) { result in
                outcome = result
                done.signal()
            }
        }
        guard done.wait(timeout: .now() + 60) == .success, let outcome else { throw TestFailure("no answer for \(member)") }
        return outcome
    }

    func admissionRecord() throws -> (admits: Int, observations: [RateLimitObservation]) {
        try loop.runAndWait { [admission] in (admission.value.admits, admission.value.observations) }
    }

    /// A GET of a member's first page, as the client would send it, for tests of the HTTP layer.
    func pageRequest(_ member: String, totalTimeoutMilliseconds: Int = 10_000, queueDeadline: Int64? = nil) -> HTTPClientRequest {
        HTTPClientRequest(url: "\(fake.baseURL)/v1/loyalties/\(FakeVoucherify.campaignID)/members/\(member)/points-expiration",
                          headers: [("X-App-Id", FakeVoucherify.appID), ("X-App-Token", FakeVoucherify.appToken)],
                          version: .http1, totalTimeoutMilliseconds: totalTimeoutMilliseconds, queueDeadline: queueDeadline)
    }
}

final class OutcomeLog: Sendable {
    private let outcomes = Mutex<[UpstreamCallOutcome]>([])
    func append(_ outcome: UpstreamCallOutcome) { outcomes.withLock { $0.append(outcome) } }
    var all: [UpstreamCallOutcome] { outcomes.withLock { $0 } }
}

/// HTTP results by request index, with the time each took from the common start.
final class TransferResults: Sendable {
    private let results = Mutex<[Int: (result: Result<HTTPClientResponse, HTTPClientError>, elapsed: Int64)]>([:])

    func record(_ index: Int, _ result: Result<HTTPClientResponse, HTTPClientError>, elapsedMilliseconds: Int64) {
        results.withLock { $0[index] = (result, elapsedMilliseconds) }
    }

    subscript(index: Int) -> (result: Result<HTTPClientResponse, HTTPClientError>, elapsed: Int64)? {
        results.withLock { $0[index] }
    }

    var count: Int { results.withLock { $0.count } }
}

@Suite(.serialized) struct VoucherifyClientTests {
    @Test func twoServerErrorsThenSuccessIsOneReadOfThreeCalls() throws {
        let client = try VoucherifyClient()
        try client.fake.putMember("RETRY", buckets: buckets(3))
        try client.fake.resetStats()
        try client.fake.fail(["mode": "status", "status": 503, "count": 2])

        let buckets = try client.read("RETRY").get()
        #expect(buckets.map(\.id) == ["lopb_0", "lopb_1", "lopb_2"])
        #expect(try client.fake.totalCalls() == 3)
        #expect(client.outcomes.all == [.serverError, .serverError, .ok])
        let record = try client.admissionRecord()
        // Admission asked before each call, told after each answer (the 503s carry the headers too).
        #expect(record.admits == 3)
        #expect(record.observations.count == 3)
        #expect(record.observations.allSatisfy { $0.limit == 2000 && $0.blockedForSeconds == nil })
        #expect(client.shared.circuitBreaker.snapshot == CircuitBreaker.Snapshot(state: .closed, opens: 0))
    }

    @Test func aRateLimitIsNotRetriedAndTheAdmissionHearsHowLongToStop() throws {
        let client = try VoucherifyClient()
        try client.fake.putMember("LIMITED", buckets: buckets(1))
        try client.fake.resetStats()
        try client.fake.fail(["mode": "rate_limit", "retry_after": 7, "count": 1])

        #expect(try client.read("LIMITED") == .failure(.rateLimited(retryAfterSeconds: 7)))
        #expect(try client.fake.totalCalls() == 1)
        #expect(client.outcomes.all == [.rateLimited])
        let record = try client.admissionRecord()
        #expect(record.admits == 1)
        #expect(record.observations == [RateLimitObservation(limit: 2000, remaining: 0, blockedForSeconds: 7)])
        // Voucherify answered: a 429 is not a failure of the service.
        #expect(client.shared.circuitBreaker.snapshot.state == .closed)
    }

    @Test func theCircuitOpensAfterRepeatedFailuresAndAProbeClosesIt() throws {
        let client = try VoucherifyClient(circuit: CircuitBreaker.Policy(failureThreshold: 3, initialCooldownMilliseconds: 500))
        try client.fake.putMember("FLAKY", buckets: buckets(2))
        try client.fake.resetStats()
        try client.fake.fail(["mode": "status", "status": 500, "count": 3])

        // One read, three failed calls (the first and two retries): the circuit opens.
        #expect(try client.read("FLAKY") == .failure(.unavailable("HTTP 500")))
        #expect(try client.fake.totalCalls() == 3)
        #expect(client.shared.circuitBreaker.snapshot == CircuitBreaker.Snapshot(state: .open, opens: 1))

        // While open: failing at once, without a call and without asking the admission.
        let started = ContinuousClock.now
        guard case .failure(.unavailable(let reason)) = try client.read("FLAKY") else {
            throw TestFailure("a read through an open circuit must fail")
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(reason.hasSuffix("(circuit open)"))
        #expect(try client.fake.totalCalls() == 3)
        #expect(try client.admissionRecord().admits == 3)

        // After the cooldown one read becomes the probe; Voucherify answers again, so it closes.
        var probeResult: Result<[PointsBucket], VoucherifyError>?
        try waitUntil("a probe read gets through") {
            probeResult = try client.read("FLAKY")
            guard case .failure(.unavailable(let why)) = probeResult, why.contains("circuit") else { return true }
            return false
        }
        #expect(try probeResult?.get().count == 2)
        #expect(client.shared.circuitBreaker.snapshot == CircuitBreaker.Snapshot(state: .closed, opens: 1))
        #expect(try client.fake.totalCalls() == 4)
        #expect(client.outcomes.all == [.serverError, .serverError, .serverError, .ok])
    }

    /// Two slots, a slow fake: a request still queued at its queue deadline fails without being
    /// sent; a cancelled queued one is never sent; and a request's total timeout counts only
    /// from when it leaves the queue.
    @Test func theQueueHonoursDeadlinesCancelsAndStartsTimeoutsLate() throws {
        let client = try VoucherifyClient(maxConcurrentTransfers: 2)
        try client.fake.putMember("SLOW", buckets: buckets(1))
        try client.fake.resetStats()
        let latency = 1_500
        try client.fake.fail(["mode": "slow", "latency_ms": latency, "count": 3])

        let results = TransferResults()
        let queueDeadline = client.loop.monotonicMilliseconds + 300
        try client.http.start([
            client.pageRequest("SLOW"),                                   // 0: runs
            client.pageRequest("SLOW"),                                   // 1: runs
            client.pageRequest("SLOW", queueDeadline: queueDeadline),     // 2: waits, gives up at 300 ms
            client.pageRequest("SLOW", totalTimeoutMilliseconds: 2_500),  // 3: waits ~1.5 s, then takes ~1.5 s
            client.pageRequest("SLOW"),                                   // 4: cancelled while waiting
        ], cancel: [4], into: results)

        try waitUntil("the queued requests are done") { results[3] != nil }
        #expect(results.count == 4)
        guard let expired = results[2], case .failure(.queueTimedOut(let waited)) = expired.result else {
            throw TestFailure("request 2 should have timed out in the queue, got \(String(describing: results[2]))")
        }
        // The deadline was set before the requests reached the loop: the wait is up to 300 ms, not at least.
        #expect(waited > 0)
        #expect(expired.elapsed < Int64(latency))
        for index in [0, 1] { #expect(try results[index]?.result.get().status == 200) }
        // Longer than its own 2.5 s timeout in all, yet it succeeded: the wait did not count.
        guard let late = results[3] else { throw TestFailure("request 3 has no result") }
        #expect(try late.result.get().status == 200)
        #expect(late.elapsed >= 2_500)
        // Only the three that left the queue reached the fake (by now the cancelled one would have).
        #expect(try client.fake.totalCalls() == 3)
        #expect(results[4] == nil)
    }

    /// The burst that used to fail: far more requests than slots, each with a timeout shorter
    /// than the whole burst takes. Queued in front of curl, every one succeeds.
    @Test func aBurstLongerThanTheTimeoutStillSucceeds() throws {
        let client = try VoucherifyClient(maxConcurrentTransfers: 4)
        try client.fake.putMember("BURST", buckets: buckets(1))
        try client.fake.resetStats()
        try client.fake.control("POST", "latency", ["latency_ms": 100])
        let count = 60  // 15 rounds of 100 ms: 1.5 s, each request allowed 1 s

        let results = TransferResults()
        try client.http.start(Array(repeating: client.pageRequest("BURST", totalTimeoutMilliseconds: 1_000), count: count), into: results)
        try waitUntil("every request of the burst is answered") { results.count == count }
        let statuses = (0..<count).map { (try? results[$0]?.result.get())?.status }
        #expect(statuses.allSatisfy { $0 == 200 })
        #expect((0..<count).compactMap { results[$0]?.elapsed }.max() ?? 0 >= 1_000)
        #expect(try client.fake.totalCalls() == count)
    }

    /// curl reports no connect time for a reused connection: a request timing out on one must
    /// still be a timeout, not a failure to connect.
    @Test func aRequestTimingOutOnAReusedConnectionIsATimeout() throws {
        let client = try VoucherifyClient()
        try client.fake.putMember("SLOW", buckets: buckets(1))
        #expect(try client.http.send(client.pageRequest("SLOW")).get().status == 200)
        try client.fake.fail(["mode": "slow", "latency_ms": 3_000, "count": 1])
        let result = try client.http.send(client.pageRequest("SLOW", totalTimeoutMilliseconds: 500))
        #expect(result.failure == .timedOut(milliseconds: 500))
    }
}

@Suite struct HungHTTP2PeerTests {
    /// libcurl 7.88 keeps an HTTP/2 connection on which a stream timed out, and every later
    /// stream on it fails at once ("Error in the HTTP2 framing layer"). The client retires such
    /// a connection: the next request gets a fresh one.
    @Test func aConnectionWhoseStreamTimedOutIsNotReused() throws {
        let peer = try HangingHTTP2Peer()
        defer { peer.stop() }
        let http = try LoopCurl()
        let request = HTTPClientRequest(url: "http://127.0.0.1:\(peer.port)/hang", version: .http2PriorKnowledge,
                                        totalTimeoutMilliseconds: 500)
        guard case .failure(.timedOut(milliseconds: 500)) = try http.send(request) else {
            throw TestFailure("the hung peer must time the first request out")
        }
        #expect(try http.send(request).get().status == 200)
        #expect(peer.connections == 2)
    }
}

/// A port on 127.0.0.1 that never completes a connection, as a blackholed host does: a listener
/// with a backlog of 0 whose one queue slot a connection of its own fills, so the kernel drops
/// every later SYN and a client waits for its connect timeout.
final class UnacceptingPort: Sendable {
    let port: Int
    private let listener: Int32
    private let filler: Int32

    init() throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0, filler >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let (listener, filler) = (listener, filler)
        let ready = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(listener, pointer, length) == 0 && listen(listener, 0) == 0 && getsockname(listener, pointer, &length) == 0
                    && connect(filler, pointer, length) == 0
            }
        }
        guard ready else {
            close(listener)
            close(filler)
            throw TestFailure("cannot set up a listener that accepts nothing on 127.0.0.1")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit {
        close(filler)
        close(listener)
    }
}

@Suite struct ConnectTimeoutTests {
    /// A connect that times out is a failure to connect whichever limit ended it: the caller
    /// must not take an unreachable host for a slow answer.
    @Test func aConnectThatTimesOutIsAConnectionFailure() throws {
        let unaccepting = try UnacceptingPort()
        let http = try LoopCurl()
        let url = "http://127.0.0.1:\(unaccepting.port)/"
        let byConnectTimeout = HTTPClientRequest(url: url, version: .http2PriorKnowledge,
                                                 connectTimeoutMilliseconds: 300, totalTimeoutMilliseconds: 10_000)
        #expect(try http.send(byConnectTimeout).failure == .connectionFailed("connect timed out after 300 ms"))
        let byTotalTimeout = HTTPClientRequest(url: url, version: .http1,
                                               connectTimeoutMilliseconds: 10_000, totalTimeoutMilliseconds: 300)
        #expect(try http.send(byTotalTimeout).failure == .connectionFailed("connect timed out after 300 ms"))
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
