/// Request bytes (headers and bodies) held by one worker's connections before their answers:
/// what an unauthenticated peer can make this process buffer. Each connection reserves before it
/// buffers and releases when the request is answered or gone. Loop-confined (one per server).
final class RequestByteBudget {
    let limit: Int
    private(set) var used = 0

    init(limit: Int) { self.limit = max(0, limit) }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    func reserve(_ bytes: Int) -> Bool {
        guard bytes >= 0, bytes <= limit - used else { return false }
        used += bytes
        return true
    }

    func release(_ bytes: Int) {
        assert(bytes >= 0 && bytes <= used, "releasing request bytes never reserved")
        used -= min(max(bytes, 0), used)
    }
}
