/// Why a stored cache record could not be read back.
public struct CachedAnswerFormatError: Error, Equatable, Sendable {
    public let reason: String
}

/// What the cache stores for one member: the response JSON without its per-request tail, plus
/// the expirations needed to compute that tail (`pointsExpiringBefore`) for any request.
public struct CachedAnswer: Equatable, Sendable {
    public let fetchedAt: Timestamp
    /// The instant after which the record must not be served.
    public let notAfter: Timestamp
    public let expirations: [ExpirationDate]
    /// Response JSON up to, not including, `,"pointsExpiringBefore":...}`. A slice, so a record
    /// read from Redis shares the reply's bytes instead of copying them.
    public let bodyPrefix: ArraySlice<UInt8>

    public init(_ expiration: MemberExpiration, notAfter: Timestamp) {
        fetchedAt = expiration.fetchedAt
        self.notAfter = notAfter
        expirations = expiration.expirations
        bodyPrefix = encodeResponsePrefix(expiration)[...]
    }

    /// The full response body for one request.
    public func responseBody(expiringBefore: CalendarDate?) -> [UInt8] {
        var writer = JSONWriter(capacity: bodyPrefix.count + 48)
        writer.appendRaw(bodyPrefix)
        writer.appendRaw(",\"pointsExpiringBefore\":")
        writer.appendInt64String(expirations.points(before: expiringBefore))
        writer.appendRaw(byte: UInt8(ascii: "}"))
        return writer.bytes
    }

    // Record layout, all integers big-endian:
    //   "pe1"  fetchedAt i64  notAfter i64  count u32  count × (days-since-1970 i32, points i64, buckets i32)
    //   prefixLength u32  prefix bytes
    // Dates travel as day numbers so decoding needs no text parsing on the hit path.
    static let magic: [UInt8] = Array("pe1".utf8)
    static let expirationSize = 16

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(3 + 8 + 8 + 4 + expirations.count * Self.expirationSize + 4 + bodyPrefix.count)
        out.append(contentsOf: Self.magic)
        out.appendBigEndian(fetchedAt.millisecondsSince1970)
        out.appendBigEndian(notAfter.millisecondsSince1970)
        out.appendBigEndian(UInt32(expirations.count))
        for expiration in expirations {
            out.appendBigEndian(Int32(expiration.date.daysSince1970))
            out.appendBigEndian(expiration.points)
            out.appendBigEndian(expiration.buckets)
        }
        out.appendBigEndian(UInt32(bodyPrefix.count))
        out.append(contentsOf: bodyPrefix)
        return out
    }

    /// Reads a record; the body prefix stays a slice of `serialized` (no copy).
    public init(serialized: [UInt8]) throws {
        let (header, prefixStart) = try serialized.withUnsafeBytes { try CachedAnswer.readHeader($0) }
        self.init(fetchedAt: header.fetchedAt, notAfter: header.notAfter, expirations: header.expirations,
                  bodyPrefix: serialized[prefixStart...])
    }

    private init(fetchedAt: Timestamp, notAfter: Timestamp, expirations: [ExpirationDate], bodyPrefix: ArraySlice<UInt8>) {
        self.fetchedAt = fetchedAt
        self.notAfter = notAfter
        self.expirations = expirations
        self.bodyPrefix = bodyPrefix
    }

    /// Everything before the body prefix, and where the prefix starts.
    private static func readHeader(_ serialized: UnsafeRawBufferPointer) throws
        -> (header: (fetchedAt: Timestamp, notAfter: Timestamp, expirations: [ExpirationDate]), prefixStart: Int) {
        guard serialized.starts(with: Self.magic) else {
            throw CachedAnswerFormatError(reason: "not a pe1 cache record")
        }
        var reader = BigEndianReader(bytes: serialized, offset: Self.magic.count)
        let fetched = try reader.read(Int64.self)
        let limit = try reader.read(Int64.self)
        let count = Int(try reader.read(UInt32.self))
        guard count <= reader.remaining / Self.expirationSize else {
            throw CachedAnswerFormatError(reason: "expiration count exceeds the record")
        }
        var expirations: [ExpirationDate] = []
        expirations.reserveCapacity(count)
        for _ in 0..<count {
            let civil = civilFromDays(Int(try reader.read(Int32.self)))
            guard let date = CalendarDate(year: civil.year, month: civil.month, day: civil.day) else {
                throw CachedAnswerFormatError(reason: "date out of range")
            }
            let points = try reader.read(Int64.self)
            let buckets = try reader.read(Int32.self)
            expirations.append(ExpirationDate(date: date, points: points, buckets: buckets))
        }
        let prefixLength = Int(try reader.read(UInt32.self))
        guard prefixLength == reader.remaining, prefixLength > 0, serialized[reader.offset] == UInt8(ascii: "{") else {
            throw CachedAnswerFormatError(reason: "body prefix length mismatch")
        }
        return ((Timestamp(millisecondsSince1970: fetched), Timestamp(millisecondsSince1970: limit), expirations), reader.offset)
    }
}

extension MemberExpiration {
    /// The ProtoJSON response; built through the cache record so there is one encoder.
    public func protoJSON(expiringBefore: CalendarDate?) -> [UInt8] {
        CachedAnswer(self, notAfter: fetchedAt).responseBody(expiringBefore: expiringBefore)
    }
}

/// Encodes the response in the contract's field order; `pointsExpiringBefore` is appended per request.
private func encodeResponsePrefix(_ m: MemberExpiration) -> [UInt8] {
    var w = JSONWriter(capacity: 320 + m.buckets.count * 160 + m.expirations.count * 48)
    w.appendRaw("{\"campaign\":")
    w.appendString(m.campaign)
    w.appendRaw(",\"campaignId\":")
    w.appendString(m.campaignId)
    w.appendRaw(",\"member\":")
    w.appendString(m.member)
    w.appendRaw(",\"voucherId\":")
    w.appendString(m.voucherId)
    w.appendRaw(",\"activePoints\":")
    w.appendInt64String(m.activePoints)
    w.appendRaw(",\"expiringPoints\":")
    w.appendInt64String(m.expiringPoints)
    w.appendRaw(",\"nonExpiringPoints\":")
    w.appendInt64String(m.nonExpiringPoints)
    if let next = m.nextExpiration {
        w.appendRaw(",\"nextExpiration\":")
        appendExpiration(next, to: &w)
    }
    w.appendRaw(",\"expirations\":[")
    for (i, expiration) in m.expirations.enumerated() {
        if i > 0 { w.appendRaw(byte: UInt8(ascii: ",")) }
        appendExpiration(expiration, to: &w)
    }
    w.appendRaw("],\"buckets\":[")
    for (i, bucket) in m.buckets.enumerated() {
        if i > 0 { w.appendRaw(byte: UInt8(ascii: ",")) }
        w.appendRaw("{\"id\":")
        w.appendString(bucket.id)
        w.appendRaw(",\"points\":")
        w.appendInt64String(bucket.points)
        w.appendRaw(",\"status\":")
        w.appendString(bucket.status)
        w.appendRaw(",\"expiresAt\":")
        if let date = bucket.expiresAt { w.appendDate(date) } else { w.appendRaw("\"\"") }
        if let created = bucket.createdAt {
            w.appendRaw(",\"createdAt\":")
            w.appendTimestamp(created)
        }
        if let updated = bucket.updatedAt {
            w.appendRaw(",\"updatedAt\":")
            w.appendTimestamp(updated)
        }
        w.appendRaw(byte: UInt8(ascii: "}"))
    }
    w.appendRaw("],\"fetchedAt\":")
    w.appendTimestamp(m.fetchedAt)
    return w.bytes
}

private func appendExpiration(_ e: ExpirationDate, to w: inout JSONWriter) {
    w.appendRaw("{\"date\":")
    w.appendDate(e.date)
    w.appendRaw(",\"points\":")
    w.appendInt64String(e.points)
    w.appendRaw(",\"buckets\":")
    w.appendNumber(Int64(e.buckets))
    w.appendRaw(byte: UInt8(ascii: "}"))
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

private struct BigEndianReader {
    let bytes: UnsafeRawBufferPointer
    var offset: Int

    var remaining: Int { bytes.count - offset }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw CachedAnswerFormatError(reason: "record truncated") }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(bigEndian: value)
    }
}
