/// Listener address and the per-connection limits that protect the server from its peers.
public struct HTTPServerConfiguration: Sendable {
    /// `host:port` (`[v6]:port` for IPv6); port 0 picks a free port shared by every worker.
    public var listen: String
    public var maxConcurrentStreams: UInt32 = 256
    /// Our SETTINGS_MAX_HEADER_LIST_SIZE, counted as RFC 9113 does (name + value + 32 per field);
    /// HTTP/1.1 requests are counted the same way, the request target as the `:path` field.
    public var maxHeaderListBytes: Int = 16 * 1024
    /// Bytes queued for a slow reader before nghttp2 is told to stop producing (backpressure).
    /// HTTP/1.1 needs no cap: it queues one answer at a time.
    public var outputBufferLimit: Int = 256 * 1024
    /// A connection on which no request has completed (and none is being answered) for this long
    /// is closed, whatever trickles in meanwhile (PINGs, a byte a second).
    public var idleTimeoutSeconds: Int = 120
    /// Rapid Reset (CVE-2023-44487): token bucket of stream resets the peer may cause.
    public var streamResetBurst: UInt64 = 1000
    public var streamResetRatePerSecond: UInt64 = 33
    /// CONTINUATION flood: most CONTINUATION frames after one HEADERS frame.
    public var maxContinuations: Int = 8
    /// Invalid frames a connection may send before it is sent away (GOAWAY).
    public var maxGlitchesPerConnection: Int = 1000

    /// Set: the port speaks TLS (ALPN h2 and http/1.1) with whatever context this holds when a
    /// connection is accepted. Nil: cleartext.
    public var tls: TLSContextHolder?
    /// A TLS client that has not finished its handshake this many seconds after it was accepted
    /// is disconnected: a deadline, which bytes trickled in meanwhile do not extend.
    public var tlsHandshakeTimeoutSeconds: Int = 10

    // MARK: resource bounds (see README, "Limits")

    /// Request bytes (headers and bodies) one connection may hold before its requests are
    /// answered; past it a request is refused: headers that do not fit reset their HTTP/2 stream
    /// (REFUSED_STREAM), a body gets 503 (HTTP/1.1 then closes).
    public var maxBufferedRequestBytesPerConnection: Int = 4 * 1024 * 1024
    /// The same over all of one worker's connections (bodies leave 1 MiB of it to headers, so a
    /// probe still fits beside a flood of unfinished uploads).
    public var maxBufferedRequestBytesPerWorker: Int = 32 * 1024 * 1024
    /// Answer bytes queued for a peer (HTTP/2: held by flow control or in the output buffer):
    /// past this, a reader that takes none of them for `pendingResponseStallSeconds` (a zero
    /// window, a reader that stopped) is disconnected. One that keeps taking them is not.
    public var maxPendingResponseBytesPerConnection: Int = 8 * 1024 * 1024
    public var pendingResponseStallSeconds: Int = 5
    /// Open connections per worker: at the cap the worker stops accepting until one closes.
    public var maxConnectionsPerWorker: Int = 4096
    /// A request's headers and body must have arrived this long after its first byte.
    public var requestArrivalTimeoutSeconds: Int = 30
    /// HTTP/2 streams of one connection whose request body is still arriving; one more is reset
    /// (REFUSED_STREAM). With the byte budget, this bounds what unfinished uploads can pin.
    public var maxStreamsReceivingBodyPerConnection: Int = 32
    /// Drain: how long after the shutdown notice (GOAWAY with the largest stream id) the final
    /// GOAWAY follows, unless the peer's PING acknowledgement comes first.
    public var shutdownNoticeMilliseconds: Int = 1000
    /// Where every worker's server reports gauges and refusals (nil: nowhere).
    public var stats: HTTPServerStats?

    public init(listen: String) { self.listen = listen }
}
