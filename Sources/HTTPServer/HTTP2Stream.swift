internal import CNghttp2

/// One HTTP/2 request stream: collects the request as it arrives, then is its response writer.
/// The application holds it while its work is in flight; when the peer resets the stream or the
/// connection goes away first, `isCancelled` turns true, `onCancel` runs once, and a late
/// `respond` is dropped. Loop-confined.
///
/// The connection is held strongly (a weak reference would put a side table on the hottest
/// object and slow every retain of it); the connection's stream table drops the stream when it
/// or the connection closes, which ends the stream → connection → stream cycle.
final class HTTP2Stream: AnswersOnce {
    private let connection: HTTP2Connection
    let streamID: Int32
    var once = ResponseOnce()
    /// Where the connection's stream table holds this stream.
    var tableIndex = 0

    // Request state, filled by the connection while headers and body arrive.
    var method = ""
    /// `:method` is HEAD: the answer goes out without DATA.
    var isHead = false
    /// `:path` split at `?` once, when it arrives.
    var path = ""
    var query: String?
    var headers = HTTPHeaders()
    var headerListBytes = 0
    var headersTooLarge = false
    /// The header fields did not fit the request-byte budget: the stream is refused.
    var headersRefused = false
    var body: [UInt8] = []
    var bodyLimit = 0
    /// Set once the request was handed to the application or rejected; later DATA is discarded.
    var dispatched = false

    // Bookkeeping of the connection's bounds (see HTTP2Connection).
    /// When the stream's first HEADERS arrived (monotonic ms): its arrival deadline starts here.
    var startedAt: Int64 = 0
    /// When its header block was complete (monotonic ms); 0 while it is still arriving.
    var headersArrivedAt: Int64 = 0
    /// Headers done, END_STREAM not yet seen: counts toward the connection's upload cap.
    var isReceivingBody = false
    /// Request bytes (headers and body) this stream holds in the connection's and worker's budgets.
    var reservedRequestBytes = 0
    /// The part of `reservedRequestBytes` set aside for the body (the declared length up front).
    var reservedBodyBytes = 0

    /// The response body and the trailers that follow it. nghttp2 frames the body up to
    /// `pendingOffset` (its data source) and leaves each frame's payload here
    /// (NGHTTP2_DATA_FLAG_NO_COPY) until the frame is staged for the socket, up to `sentOffset`.
    var pendingBody: [UInt8] = []
    var pendingOffset = 0
    private var sentOffset = 0
    var pendingTrailers: [(name: String, value: String)] = []

    init(connection: HTTP2Connection, streamID: Int32) {
        self.connection = connection
        self.streamID = streamID
    }

    func respond(_ response: HTTPResponse) {
        connection.loop.assertInLoop()
        guard once.claim() else { return }
        connection.submit(response, for: self)
    }

    /// nghttp2's data source: the size of the next piece of the response body, which stays here
    /// (NO_COPY) until `stageBody` sends it. At the end, trailers (if any) go out as a HEADERS
    /// frame that ends the stream instead of DATA.
    func readBody(capacity: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let count = min(capacity, pendingBody.count - pendingOffset)
        pendingOffset += count
        // An empty frame (the body ended exactly on the previous one) has nothing to leave here.
        if count > 0 { flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_NO_COPY.rawValue) }
        if pendingOffset == pendingBody.count {
            flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue)
            if !pendingTrailers.isEmpty {
                // A refused trailer resets this stream only, not the whole connection.
                guard connection.submitTrailers(pendingTrailers, for: self) else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
                flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue)
                pendingTrailers = []
            }
        }
        return count
    }

    /// Stages the payload of the DATA frame nghttp2 is sending: the next `length` bytes of the
    /// body, framed by the last `readBody`. The body is let go of once all of it is staged.
    func stageBody(_ length: Int, to socket: ConnectionSocket) {
        let count = min(length, pendingBody.count - sentOffset)
        pendingBody.withUnsafeBytes { body in
            if count > 0 { socket.stage(body.baseAddress! + sentOffset, count) }
        }
        sentOffset += count
        connection.responseBytesTaken(count)
        if sentOffset == pendingBody.count { pendingBody = [] }
    }

    /// Response body bytes not yet staged for the socket (still held for a peer's flow-control window).
    var unsentResponseBytes: Int { pendingBody.count - min(sentOffset, pendingBody.count) }

    func cancel() {
        once.cancel()?()
    }
}
