/// One request stream's state while its headers and body arrive and its response is sent.
final class ServerStream {
    let id: Int32
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
    var responder: Responder?
    /// Response body not yet handed to nghttp2.
    var pendingBody: [UInt8] = []
    var pendingOffset = 0

    init(id: Int32) { self.id = id }
}
