import Gzip

/// The gzip form of the last body compressed for a cached answer, kept beside it so that callers
/// asking the same answer compressed cost one compression, not one each. A body that differs (by
/// its bytes: another codec, another request field) is compressed and replaces it. Loop-confined:
/// it lives in a worker's cache.
public final class GzipMemo {
    private var source: [UInt8] = []
    private var gzipped: [UInt8] = []
    /// Told by how many bytes the memo grew (negative: shrank), for its owner's bound.
    private let resized: (Int) -> Void

    public init(resized: @escaping (Int) -> Void) {
        self.resized = resized
    }

    /// Bytes held.
    public var bytes: Int { source.count + gzipped.count }

    /// `body` gzip'd, compressed now only if it is not the body compressed last time.
    public func compressed(_ body: [UInt8]) -> [UInt8] {
        if body == source { return gzipped }
        let before = bytes
        gzipped = Gzip.compress(body)
        source = body
        resized(bytes - before)
        return gzipped
    }
}
