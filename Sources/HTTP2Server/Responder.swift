internal import CNghttp2

/// One request stream: collects the request as it arrives, then answers it. The application
/// holds it while its work is in flight; when the peer resets the stream or the connection goes
/// away first, `isCancelled` turns true, `onCancel` runs once, and a late `respond` is dropped.
/// Loop thread only.
///
/// The connection is held strongly (a weak reference would put a side table on the hottest
/// object and slow every retain of it); the connection's stream table drops the stream when it
/// or the connection closes, which ends the stream → connection → stream cycle.
public final class Responder {
    private let connection: ServerConnection
    let streamID: Int32
    public private(set) var isCancelled = false
    public private(set) var hasResponded = false
    /// Runs once if the stream ends before a response was given (client reset, connection lost).
    public var onCancel: (() -> Void)?

    // Request state, filled by the connection while headers and body arrive.
    var method = ""
    /// `:path` split at `?` once, when it arrives.
    var path = ""
    var query: String?
    var headers = HeaderBlock()
    var headerListBytes = 0
    var headersTooLarge = false
    var body: [UInt8] = []
    var bodyLimit = 0
    /// Set once the request was handed to the application or rejected; later DATA is discarded.
    var dispatched = false

    /// Response body not yet handed to nghttp2.
    var pendingBody: [UInt8] = []
    var pendingOffset = 0

    init(connection: ServerConnection, streamID: Int32) {
        self.connection = connection
        self.streamID = streamID
    }

    /// Sends the response; ignored after a first response or after cancellation.
    public func respond(_ response: HTTPResponse) {
        guard !hasResponded, !isCancelled else { return }
        hasResponded = true
        onCancel = nil
        connection.submit(response, for: self)
    }

    /// nghttp2's data source: copies the next piece of the response body into `buffer`.
    func readBody(into buffer: UnsafeMutablePointer<UInt8>, capacity: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let count = min(capacity, pendingBody.count - pendingOffset)
        pendingBody.withUnsafeBufferPointer { body in
            guard let base = body.baseAddress, count > 0 else { return }
            buffer.update(from: base + pendingOffset, count: count)
        }
        pendingOffset += count
        if pendingOffset == pendingBody.count {
            flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue)
            pendingBody = []
        }
        return count
    }

    func cancel() {
        guard !hasResponded, !isCancelled else { return }
        isCancelled = true
        let action = onCancel
        onCancel = nil
        action?()
    }
}
