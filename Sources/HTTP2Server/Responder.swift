/// Answers one request. Held by the application while its work is in flight; when the peer
/// resets the stream or the connection goes away first, `isCancelled` turns true, `onCancel`
/// runs once, and a late `respond` is dropped. Loop thread only.
///
/// The connection is held strongly (a weak reference would put a side table on the hottest
/// object and slow every retain of it); the stream table drops its responder when the stream
/// or the connection closes, which ends the stream → responder → connection cycle.
public final class Responder {
    private let connection: ServerConnection
    let streamID: Int32
    public private(set) var isCancelled = false
    public private(set) var hasResponded = false
    /// Runs once if the stream ends before a response was given (client reset, connection lost).
    public var onCancel: (() -> Void)?

    init(connection: ServerConnection, streamID: Int32) {
        self.connection = connection
        self.streamID = streamID
    }

    /// Sends the response; ignored after a first response or after cancellation.
    public func respond(_ response: HTTPResponse) {
        guard !hasResponded, !isCancelled else { return }
        hasResponded = true
        onCancel = nil
        connection.submit(response, streamID: streamID)
    }

    func cancel() {
        guard !hasResponded, !isCancelled else { return }
        isCancelled = true
        let action = onCancel
        onCancel = nil
        action?()
    }
}
