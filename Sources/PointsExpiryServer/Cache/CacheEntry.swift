import ExpiryDomain

/// What Voucherify said "not found" about: the campaign, or the card within it.
enum NotFoundSubject: UInt8, Equatable, Sendable {
    case campaign = 0x63 // "c"
    case member = 0x6D   // "m"
}

/// A remembered `not_found` (`CACHE_NOT_FOUND_SECONDS`), so unknown names do not cost a
/// Voucherify call each. Dropped by invalidation like any answer.
struct CachedNotFound: Equatable, Sendable {
    let fetchedAt: Timestamp
    let freshUntil: Timestamp
    let subject: NotFoundSubject

    // Layout, big-endian: "pn2"  fetchedAt i64  freshUntil i64  subject u8
    static let magic: [UInt8] = Array("pn2".utf8)

    init(fetchedAt: Timestamp, freshUntil: Timestamp, subject: NotFoundSubject) {
        self.fetchedAt = fetchedAt
        self.freshUntil = freshUntil
        self.subject = subject
    }

    func serialized() -> [UInt8] {
        var out = Self.magic
        out.reserveCapacity(3 + 8 + 8 + 1)
        out.appendBigEndian(fetchedAt.millisecondsSince1970)
        out.appendBigEndian(freshUntil.millisecondsSince1970)
        out.append(subject.rawValue)
        return out
    }

    init(serialized: [UInt8]) throws {
        guard serialized.starts(with: Self.magic), serialized.count == 3 + 8 + 8 + 1 else {
            throw CachedAnswerFormatError(reason: "not a pn2 cache record")
        }
        let (fetched, fresh) = try serialized.withUnsafeBytes { bytes in
            var reader = BigEndianReader(bytes: bytes, offset: Self.magic.count)
            return (try reader.read(Int64.self), try reader.read(Int64.self))
        }
        guard let subject = NotFoundSubject(rawValue: serialized[19]) else {
            throw CachedAnswerFormatError(reason: "unknown not-found subject")
        }
        self.init(fetchedAt: Timestamp(millisecondsSince1970: fetched), freshUntil: Timestamp(millisecondsSince1970: fresh), subject: subject)
    }
}

/// One cached record: an answer or a remembered `not_found`.
enum CacheEntry: Equatable, Sendable {
    case answer(CachedAnswer)
    case notFound(CachedNotFound)

    var fetchedAt: Timestamp {
        switch self {
        case .answer(let answer): return answer.fetchedAt
        case .notFound(let notFound): return notFound.fetchedAt
        }
    }

    var freshUntil: Timestamp {
        switch self {
        case .answer(let answer): return answer.freshUntil
        case .notFound(let notFound): return notFound.freshUntil
        }
    }

    func serialized() -> [UInt8] {
        switch self {
        case .answer(let answer): return answer.serialized()
        case .notFound(let notFound): return notFound.serialized()
        }
    }

    init(serialized: [UInt8]) throws {
        if serialized.starts(with: CachedNotFound.magic) {
            self = .notFound(try CachedNotFound(serialized: serialized))
        } else {
            self = .answer(try CachedAnswer(serialized: serialized))
        }
    }

    /// The 8 bytes after the magic (fetchedAt), as the lease script compares them: a record
    /// with another stamp is a new fill.
    static func stamp(of serialized: [UInt8]) -> ArraySlice<UInt8> {
        serialized.count >= 11 ? serialized[3..<11] : []
    }
}
