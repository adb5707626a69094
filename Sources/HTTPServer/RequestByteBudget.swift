/// Request bytes (headers and bodies) held by one worker's connections before their answers:
/// what an unauthenticated peer can make this process buffer. Each connection reserves before it
/// buffers and releases when the request is answered or gone. Loop-confined (one per server).
final class RequestByteBudget {
    /// What a request reserves bytes for.
    enum Use {
        /// Header fields: bounded per request by the header list limit.
        case headers
        /// Body bytes: they must leave `headersHeadroom` free, so a flood of unfinished bodies
        /// never leaves a body-less request (a health probe, a metrics scrape) without room.
        case body
    }

    let limit: Int
    let headersHeadroom: Int
    private(set) var used = 0

    init(limit: Int) {
        self.limit = max(0, limit)
        headersHeadroom = min(1024 * 1024, self.limit / 16)
    }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    func reserve(_ bytes: Int, for use: Use) -> Bool {
        let room = limit - used - (use == .body ? headersHeadroom : 0)
        guard bytes >= 0, bytes <= room else { return false }
        used += bytes
        return true
    }

    func release(_ bytes: Int) {
        assert(bytes >= 0 && bytes <= used, "releasing request bytes never reserved")
        used -= min(max(bytes, 0), used)
    }
}
