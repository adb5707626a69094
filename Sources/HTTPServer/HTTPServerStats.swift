import Synchronization

/// What the servers of every worker report to whoever renders metrics: gauges of what is open
/// and counts of what was refused. Process-wide atomics (relaxed): written on the loops, read by a
/// scrape on any thread. Label values are this file's enums, never request data.
public final class HTTPServerStats: Sendable {
    /// Why the server itself (not the application) turned a connection or a request away.
    public enum Refusal: String, CaseIterable, Sendable {
        /// The worker's connection cap was reached: the accepted socket was closed at once.
        case connectionLimit = "connection_limit"
        /// The worker or connection request-byte budget was spent: 503 or stream reset.
        case requestBytes = "request_bytes"
        /// An HTTP/2 connection already had its most streams with a body still arriving.
        case uploadStreams = "upload_streams"
        /// A request did not arrive whole (headers and body) within its bound.
        case requestTimeout = "request_timeout"
        /// A reader that stopped taking answers had too many bytes pending: connection closed.
        case pendingResponse = "pending_response"
        /// Header list or body over its limit.
        case headerTooLarge = "header_too_large"
        case bodyTooLarge = "body_too_large"
        /// Malformed HTTP/1.1 or an HTTP/2 protocol error that ended the connection.
        case malformed = "malformed"
        /// HTTP/2 abuse countermeasures: rapid reset, CONTINUATION flood, too many glitches.
        case abuse = "abuse"
    }

    private final class Count: Sendable {
        let value = Atomic<Int>(0)
    }

    private let connections = Atomic<Int>(0)
    private let streams = Atomic<Int>(0)
    private let refusalCounts: [Count] = Refusal.allCases.map { _ in Count() }
    private let acceptErrors = Atomic<Int>(0)

    public init() {}

    func connectionOpened() { connections.add(1, ordering: .relaxed) }
    func connectionClosed() { connections.subtract(1, ordering: .relaxed) }
    func streamOpened() { streams.add(1, ordering: .relaxed) }
    func streamClosed() { streams.subtract(1, ordering: .relaxed) }
    func refused(_ reason: Refusal) { refusalCounts[Refusal.allCases.firstIndex(of: reason)!].value.add(1, ordering: .relaxed) }
    func acceptFailed() { acceptErrors.add(1, ordering: .relaxed) }

    /// Connections open now (TLS handshakes included), over every worker.
    public var openConnections: Int { connections.load(ordering: .relaxed) }
    /// HTTP/2 streams and HTTP/1.1 requests open now.
    public var openStreams: Int { streams.load(ordering: .relaxed) }
    public func refusals(_ reason: Refusal) -> Int { refusalCounts[Refusal.allCases.firstIndex(of: reason)!].value.load(ordering: .relaxed) }
    /// accept() failures (EMFILE, ENFILE, ENOBUFS…).
    public var acceptFailures: Int { acceptErrors.load(ordering: .relaxed) }
}
