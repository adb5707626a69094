import APIMessages
import Codecs
import ExpiryDomain
import RPC
import SwiftProtobuf

/// Why a stored cache record could not be read back.
struct CachedAnswerFormatError: Error, Equatable, Sendable {
    let reason: String
}

/// What the cache stores for one member: the response JSON without its per-request tail, plus
/// the expirations needed to compute that tail (`pointsExpiringBefore`) for any request.
///
/// Only JSON is stored, though a hit may be asked for binary: a second encoding in the record made
/// every JSON hit ~14% dearer in instructions (the bigger Redis reply, and hiredis 0.14's reader
/// moving its buffer per 1 KiB consumed; callgrind, README "Benchmark"), and kept this format
/// readable by the release before it. A binary answer is transcoded through the generated message,
/// once per record and worker (`BinaryAnswers`).
struct CachedAnswer: Equatable, Sendable {
    let fetchedAt: Timestamp
    /// Served as a hit until then; stale windows are measured from here (`MemberAnswerPolicy`).
    let freshUntil: Timestamp
    /// The member's next deduction instant: never served at or past it, in any state.
    let notAfter: Timestamp
    let expirations: [ExpirationDate]
    /// Response JSON up to, not including, `,"pointsExpiringBefore":...}`. A slice, so a record
    /// read from Redis shares the reply's bytes instead of copying them.
    let bodyPrefix: ArraySlice<UInt8>

    init(_ expiration: MemberExpiration, freshUntil: Timestamp, notAfter: Timestamp) {
        fetchedAt = expiration.fetchedAt
        self.freshUntil = freshUntil
        self.notAfter = notAfter
        expirations = expiration.expirations
        bodyPrefix = encodeResponsePrefix(expiration)[...]
    }

    /// The full response body for one request, in its codec.
    func responseBody(_ codec: MessageCodec, expiringBefore: CalendarDate?) throws(RPCError) -> [UInt8] {
        switch codec {
        case .json: return jsonBody(expiringBefore: expiringBefore)
        case .proto: return protoBody(prefix: try protoPrefix(), expiringBefore: expiringBefore)
        }
    }

    /// The binary `MemberExpiration` without field 12 (`points_expiring_before`), which each
    /// request appends (protobuf fields may come in any order).
    func protoPrefix() throws(RPCError) -> [UInt8] {
        try responseMessage(expiringBefore: nil).protoBytes
    }

    /// `prefix` (from `protoPrefix`) with this request's `points_expiring_before`.
    func protoBody(prefix: [UInt8], expiringBefore: CalendarDate?) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(prefix.count + 11)
        body.append(contentsOf: prefix)
        let points = expirations.points(before: expiringBefore)
        // proto3 leaves a zero scalar out. Tag: field 12, varint (12 << 3 | 0).
        if points != 0 {
            body.append(12 << 3)
            var value = UInt64(bitPattern: points)
            while value >= 0x80 {
                body.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            body.append(UInt8(value))
        }
        return body
    }

    private func jsonBody(expiringBefore: CalendarDate?) -> [UInt8] {
        var writer = JSONWriter(capacity: bodyPrefix.count + 48)
        appendResponseBody(to: &writer, expiringBefore: expiringBefore)
        return writer.bytes
    }

    /// The response as the generated message, read from the stored JSON; a record whose JSON does
    /// not read back is a fault of this service, so `internal`.
    func responseMessage(expiringBefore: CalendarDate?) throws(RPCError) -> Pointsexpiry_V1_MemberExpiration {
        do {
            // A record written by a newer release may carry fields this one does not know.
            var options = JSONDecodingOptions()
            options.ignoreUnknownFields = true
            return try Pointsexpiry_V1_MemberExpiration(jsonUTF8Bytes: jsonBody(expiringBefore: expiringBefore), options: options)
        } catch {
            throw RPCError(.internal, "a cached answer could not be read back: \(error)")
        }
    }

    /// The response message, written where it is needed (inside a batch's result).
    func appendResponseBody(to writer: inout JSONWriter, expiringBefore: CalendarDate?) {
        writer.appendRaw(bodyPrefix)
        writer.appendRaw(",\"pointsExpiringBefore\":")
        writer.appendInt64String(expirations.points(before: expiringBefore))
        writer.appendRaw(byte: UInt8(ascii: "}"))
    }

    // Record layout, all integers big-endian:
    //   "pe2"  fetchedAt i64  freshUntil i64  notAfter i64  count u32  count × (days-since-1970 i32, points i64, buckets i32)
    //   prefixLength u32  prefix bytes
    // Dates travel as day numbers so decoding needs no text parsing on the hit path. Every
    // record kind starts with a 3-byte magic and fetchedAt: the lease script compares those
    // 8 bytes to tell a new fill from the record a waiter already saw.
    static let magic: [UInt8] = Array("pe2".utf8)
    static let expirationSize = 16

    func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(3 + 8 + 8 + 8 + 4 + expirations.count * Self.expirationSize + 4 + bodyPrefix.count)
        out.append(contentsOf: Self.magic)
        out.appendBigEndian(fetchedAt.millisecondsSince1970)
        out.appendBigEndian(freshUntil.millisecondsSince1970)
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
    init(serialized: [UInt8]) throws {
        let (header, prefixStart) = try serialized.withUnsafeBytes { try CachedAnswer.readHeader($0) }
        self.init(fetchedAt: header.fetchedAt, freshUntil: header.freshUntil, notAfter: header.notAfter,
                  expirations: header.expirations, bodyPrefix: serialized[prefixStart...])
    }

    private init(fetchedAt: Timestamp, freshUntil: Timestamp, notAfter: Timestamp, expirations: [ExpirationDate],
                 bodyPrefix: ArraySlice<UInt8>) {
        self.fetchedAt = fetchedAt
        self.freshUntil = freshUntil
        self.notAfter = notAfter
        self.expirations = expirations
        self.bodyPrefix = bodyPrefix
    }

    /// Everything before the body prefix, and where the prefix starts.
    private static func readHeader(_ serialized: UnsafeRawBufferPointer) throws
        -> (header: (fetchedAt: Timestamp, freshUntil: Timestamp, notAfter: Timestamp, expirations: [ExpirationDate]), prefixStart: Int) {
        guard serialized.starts(with: Self.magic) else {
            throw CachedAnswerFormatError(reason: "not a pe2 cache record")
        }
        var reader = BigEndianReader(bytes: serialized, offset: Self.magic.count)
        let fetched = try reader.read(Int64.self)
        let fresh = try reader.read(Int64.self)
        let limit = try reader.read(Int64.self)
        let count = Int(try reader.read(UInt32.self))
        guard count <= reader.remaining / Self.expirationSize else {
            throw CachedAnswerFormatError(reason: "expiration count exceeds the record")
        }
        var expirations: [ExpirationDate] = []
        expirations.reserveCapacity(count)
        for _ in 0..<count {
            guard let date = CalendarDate(validatingDaysSince1970: Int(try reader.read(Int32.self))) else {
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
        return ((Timestamp(millisecondsSince1970: fetched), Timestamp(millisecondsSince1970: fresh), Timestamp(millisecondsSince1970: limit),
                 expirations), reader.offset)
    }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

struct BigEndianReader {
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
