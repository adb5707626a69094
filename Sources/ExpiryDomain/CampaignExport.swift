import Codecs

/// A points-expiration export (or a stored aggregate of one) that cannot be used at all.
public enum ExportFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not even a header row.
    case empty
    case malformedHeader(reason: String)
    /// Labels as found (at most 20, each cut to 40 characters).
    case missingColumns(missing: [ExportColumn], found: [String])
    case duplicateColumn(ExportColumn, labels: [String])
    /// A limit of `CampaignAggregator.Limits` was reached.
    case tooLarge(String)
    case invalidStoredAggregate(String)

    public var description: String {
        switch self {
        case .empty:
            "the export is empty: it has no header row"
        case .malformedHeader(let reason):
            "the export's header row is malformed: \(reason)"
        case .missingColumns(let missing, let found):
            "the export's header has no \(missing.map(\.rawValue).joined(separator: ", ")) column;"
                + " found \(found.isEmpty ? "none" : found.map { "\"\($0)\"" }.joined(separator: ", "))"
        case .duplicateColumn(let column, let labels):
            "the export's header has \(labels.map { "\"\($0)\"" }.joined(separator: " and ")), all \(column.rawValue)"
        case .tooLarge(let reason):
            "the export is too large: \(reason)"
        case .invalidStoredAggregate(let reason):
            "the stored campaign aggregate is unusable: \(reason)"
        }
    }
}

/// The export's columns, by Voucherify field name.
public enum ExportColumn: String, CaseIterable, Sendable {
    case id
    case campaignId = "campaign_id"
    case voucherId = "voucher_id"
    case points
    case status
    case expiresAt = "expires_at"

    static let required: [ExportColumn] = [.voucherId, .points, .status, .expiresAt]

    /// Voucherify does not document the export's header; it may carry field names or
    /// human-readable labels ("Voucher ID"). Labels compare ASCII case-insensitively, ignoring
    /// spaces, underscores, dashes and dots, and only unambiguous ones map ("Expiration Date"
    /// could be another date, so it does not).
    public init?(label: some StringProtocol) {
        let ignored: Set<Character> = [" ", "_", "-", "."]
        switch String(label.filter { !ignored.contains($0) }).lowercased() {
        case "id": self = .id
        case "campaignid": self = .campaignId
        case "voucherid": self = .voucherId
        case "points", "totalpoints", "buckettotalpoints": self = .points
        case "status": self = .status
        case "expiresat": self = .expiresAt
        default: return nil
        }
    }
}

/// Where each column we read sits in the export's rows (by name, never by position).
struct ExportHeader {
    let fieldCount: Int
    let voucherId: Int
    let points: Int
    let status: Int
    let expiresAt: Int
    let campaignId: Int?

    /// Labels shown in errors: enough to recognise the file, bounded whatever it holds.
    private static let shownLabels = 20

    init(labels: [String]) throws(ExportFormatError) {
        var positions: [ExportColumn: Int] = [:]
        for (position, label) in labels.enumerated() {
            guard let column = ExportColumn(label: label) else { continue }
            if let earlier = positions[column] {
                throw .duplicateColumn(column, labels: [labels[earlier], label].map { shown($0) })
            }
            positions[column] = position
        }
        let missing = ExportColumn.required.filter { positions[$0] == nil }
        guard missing.isEmpty,
              let voucherId = positions[.voucherId], let points = positions[.points],
              let status = positions[.status], let expiresAt = positions[.expiresAt]
        else { throw .missingColumns(missing: missing, found: labels.prefix(Self.shownLabels).map { shown($0) }) }
        fieldCount = labels.count
        self.voucherId = voucherId
        self.points = points
        self.status = status
        self.expiresAt = expiresAt
        campaignId = positions[.campaignId]
    }
}

/// Aggregates a points-expiration export as it downloads: feed it the CSV's bytes in chunks of
/// any size, then `finish`. Only the current row, the distinct voucher ids and 16 bytes per
/// ACTIVE dated bucket with points are held; the rows themselves are not.
///
/// Rows follow `MemberExpiration`'s rules, so that campaign figures are the sums of the members'
/// ones: only ACTIVE rows count (ASCII case-insensitive, untrimmed, as there); other statuses are
/// skipped and counted; a row whose field count differs from the header's, or whose voucher id,
/// points or date cannot be read, is malformed: counted, sampled and otherwise ignored. Voucherify
/// does not document the export's formats: `expires_at` is `YYYY-MM-DD` or, failing that, an
/// RFC 3339 timestamp whose first ten characters are then the date; empty means never expires.
///
/// Not thread-safe: one value, fed by one loop. After an error it keeps throwing that error
/// until `finish` (which throws it too, then starts over).
public struct CampaignAggregator {
    public struct Limits: Sendable {
        /// Data rows in one export.
        public var maxRows: Int
        /// UTF-8 bytes of distinct voucher ids.
        public var maxVoucherIdBytes: Int

        /// At the defaults the worst case holds 64 MiB of buckets (16 bytes each, 32 MiB more
        /// while sorting them) and 64 MiB of voucher ids plus their index; 1,000,000 rows of
        /// 200,000 cards grow the peak RSS by about 31 MiB (scripts/bench-export.sh).
        public init(maxRows: Int = 4_000_000, maxVoucherIdBytes: Int = 64 << 20) {
            self.maxRows = maxRows
            self.maxVoucherIdBytes = maxVoucherIdBytes
        }
    }

    private let limits: Limits
    private var reader = CSVPushReader()
    private var tally: ExportTally

    public init(limits: Limits = Limits()) {
        self.limits = limits
        tally = ExportTally(limits: limits)
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(ExportFormatError) {
        Self.read(&reader, into: &tally) { reader, handle in reader.feed(bytes, handle) }
        if let failure = tally.failure { throw failure }
    }

    /// The aggregate of everything fed. An input without a header row is an error; a header
    /// alone is an empty campaign. The aggregator starts over afterwards.
    public mutating func finish() throws(ExportFormatError) -> CampaignAggregate {
        defer { self = CampaignAggregator(limits: limits) }
        Self.read(&reader, into: &tally) { reader, handle in reader.finish(handle) }
        if let failure = tally.failure { throw failure }
        guard tally.header != nil else { throw .empty }
        return tally.aggregate()
    }

    /// Runs the reader with the tally taking its events (two separate values, so that the
    /// callback may change one while the other runs).
    private static func read(
        _ reader: inout CSVPushReader, into tally: inout ExportTally,
        _ body: (inout CSVPushReader, (CSVEvent) -> Void) -> Void
    ) {
        body(&reader) { tally.take($0) }
    }
}

/// A bucket that moves a card's points on a day, before days are summed per card.
struct DatedBucket {
    /// Card index in the high 32 bits, day in the low ones (ordered as the signed day).
    var key: UInt64
    var points: Int64
}

/// Day numbers as unsigned keys that sort like the signed days.
@inline(__always) func dayKey(_ day: Int32) -> UInt64 { UInt64(UInt32(bitPattern: day) ^ 0x8000_0000) }
@inline(__always) func dayOfKey(_ key: UInt64) -> Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: key) ^ 0x8000_0000) }

/// The aggregator's state between rows.
struct ExportTally {
    let limits: Limits
    typealias Limits = CampaignAggregator.Limits

    var header: ExportHeader?
    /// The first fatal problem; events after it are ignored.
    var failure: ExportFormatError?
    var rows = ExportRowCounts()
    var campaignId = ""
    var activePoints: Int64 = 0
    var voucherIds = VoucherIdTable()
    /// Per voucher id: it has an ACTIVE bucket with points > 0.
    var hasPoints: [Bool] = []
    var cardsWithPoints: Int64 = 0
    /// ACTIVE buckets with a date and points other than 0 (zero buckets change nothing).
    var datedBuckets: [DatedBucket] = []

    init(limits: Limits) {
        self.limits = limits
    }

    mutating func take(_ event: CSVEvent) {
        guard failure == nil else { return }
        do {
            try add(event)
        } catch {
            failure = error
        }
    }

    private mutating func add(_ event: CSVEvent) throws(ExportFormatError) {
        guard let header else {
            switch event {
            case .record(let record):
                header = try ExportHeader(labels: record.map { String(decoding: $0, as: UTF8.self) })
            case .malformed(let line, let problem):
                throw .malformedHeader(reason: "line \(line): \(problem)")
            }
            return
        }
        guard rows.total < limits.maxRows else { throw .tooLarge("it has more than \(limits.maxRows) rows") }
        rows.total += 1
        switch event {
        case .record(let record): try add(record, header)
        case .malformed(let line, let problem): countMalformed(line: line, problem.description)
        }
    }

    private mutating func add(_ record: CSVRecord, _ header: ExportHeader) throws(ExportFormatError) {
        guard record.count == header.fieldCount else {
            countMalformed(line: record.line, "\(record.count) fields where the header has \(header.fieldCount)")
            return
        }
        if campaignId.isEmpty, let column = header.campaignId {
            let value = record[column]
            if !value.isEmpty, value.count <= maxIdentifierBytes { campaignId = String(decoding: value, as: UTF8.self) }
        }
        // The other fields of a skipped row do not matter, so they are not judged.
        guard isActiveStatus(record[header.status]) else {
            rows.skipped += 1
            return
        }
        let voucherId = record[header.voucherId]
        guard !voucherId.isEmpty else {
            countMalformed(line: record.line, "voucher_id is empty")
            return
        }
        guard voucherId.count <= maxIdentifierBytes else {
            countMalformed(line: record.line, "voucher_id is longer than \(maxIdentifierBytes) bytes")
            return
        }
        guard let points = parsePoints(record[header.points]) else {
            countMalformed(line: record.line, "points \(shownValue(record[header.points])) is not an integer")
            return
        }
        let expiresAt = record[header.expiresAt]
        let day = parseExpiryDay(expiresAt)
        guard expiresAt.isEmpty || day != nil else {
            countMalformed(line: record.line, "expires_at \(shownValue(expiresAt)) is not a date")
            return
        }
        rows.counted += 1
        activePoints = activePoints.addingSaturating(points)
        guard points > 0 || (day != nil && points != 0) else { return }
        let card = try cardIndex(voucherId)
        if points > 0, !hasPoints[card] {
            hasPoints[card] = true
            cardsWithPoints += 1
        }
        if let day, points != 0 {
            datedBuckets.append(DatedBucket(key: UInt64(card) << 32 | dayKey(day), points: points))
        }
    }

    private mutating func cardIndex(_ voucherId: Slice<UnsafeBufferPointer<UInt8>>) throws(ExportFormatError) -> Int {
        let bytes = UnsafeBufferPointer(rebasing: voucherId)
        if let known = voucherIds.index(of: bytes) { return known }
        guard voucherId.count <= limits.maxVoucherIdBytes - voucherIds.byteCount else {
            throw .tooLarge("its distinct voucher ids take more than \(limits.maxVoucherIdBytes) bytes")
        }
        hasPoints.append(false)
        return voucherIds.insert(bytes)
    }

    private mutating func countMalformed(line: Int, _ reason: String) {
        rows.malformed += 1
        if rows.samples.count < ExportRowCounts.sampleLimit { rows.samples.append("line \(line): \(reason)") }
    }

    /// Sums each card's buckets per day, keeps the days where a card's sum is > 0 (as its
    /// `MemberExpiration` would list them), and counts (previous day, day) pairs per card.
    mutating func aggregate() -> CampaignAggregate {
        voucherIds = VoucherIdTable() // no longer needed: free it before sorting
        hasPoints = []
        var buckets = datedBuckets
        datedBuckets = []
        buckets.sort { $0.key < $1.key }

        // Pairs are written over the buckets already read (there are never more pairs than
        // buckets read so far): key = day in the high half, previous day in the low half.
        var dayTotals: [Int32: (points: Int64, buckets: Int64)] = [:]
        var pairCount = 0
        var index = 0
        var card: UInt64 = .max
        var previousDay = CampaignAggregate.noPreviousDay
        while index < buckets.count {
            let key = buckets[index].key
            var points: Int64 = 0
            var withPoints: Int64 = 0
            while index < buckets.count, buckets[index].key == key {
                points = points.addingSaturating(buckets[index].points)
                if buckets[index].points > 0 { withPoints += 1 }
                index += 1
            }
            if key >> 32 != card {
                card = key >> 32
                previousDay = CampaignAggregate.noPreviousDay
            }
            guard points > 0 else { continue }
            let day = dayOfKey(key)
            var totals = dayTotals[day, default: (0, 0)]
            totals.points = totals.points.addingSaturating(points)
            totals.buckets += withPoints
            dayTotals[day] = totals
            buckets[pairCount] = DatedBucket(key: dayKey(day) << 32 | dayKey(previousDay), points: 0)
            pairCount += 1
            previousDay = day
        }
        buckets.removeLast(buckets.count - pairCount)
        buckets.sort { $0.key < $1.key }

        var days: [CampaignDay] = []
        var previousDays: [Int32] = []
        var pairCards: [Int64] = []
        var pairStarts = [0]
        index = 0
        while index < buckets.count {
            let day = dayOfKey(buckets[index].key >> 32)
            var dayCards: Int64 = 0
            while index < buckets.count, dayOfKey(buckets[index].key >> 32) == day {
                let key = buckets[index].key
                var cards: Int64 = 0
                while index < buckets.count, buckets[index].key == key {
                    cards += 1
                    index += 1
                }
                previousDays.append(dayOfKey(key))
                pairCards.append(cards)
                dayCards += cards
            }
            pairStarts.append(previousDays.count)
            let totals = dayTotals[day, default: (0, 0)]
            days.append(CampaignDay(date: CalendarDate(daysSince1970: Int(day)), points: totals.points,
                                    buckets: totals.buckets, cards: dayCards))
        }
        return CampaignAggregate(
            campaignId: campaignId, activePoints: activePoints, cards: cardsWithPoints, days: days, rows: rows,
            previousDays: previousDays, pairCards: pairCards, pairStarts: pairStarts)
    }
}

/// Whether a bucket's status is ACTIVE: ASCII case-insensitive (clearing bit 5 folds lowercase
/// letters onto uppercase), untrimmed. One rule for member buckets and export rows.
func isActiveStatus(_ bytes: some Sequence<UInt8>) -> Bool {
    bytes.elementsEqual("ACTIVE".utf8) { $0 & 0xDF == $1 }
}

/// An integer (optional `-`) between optional spaces, within Int64: `parseDecimalInt64`'s rule,
/// as for the member API's points.
func parsePoints(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Int64? {
    let space = UInt8(ascii: " ")
    guard let first = bytes.firstIndex(where: { $0 != space }), let last = bytes.lastIndex(where: { $0 != space }) else { return nil }
    return parseDecimalInt64(bytes[first...last])
}

/// The day number of `YYYY-MM-DD`, or of the date an RFC 3339 timestamp starts with (its local
/// date: the export's dates are calendar days).
func parseExpiryDay(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Int32? {
    if bytes.count > 10, parseRFC3339(UnsafeBufferPointer(rebasing: bytes)) == nil { return nil }
    guard bytes.count >= 10, let date = parseISODate(bytes.prefix(10)) else { return nil }
    return Int32(date.daysSince1970)
}

/// A field as shown in a sample: quoted, control characters blanked, at most 40 characters.
func shownValue(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
    "\"\(shown(String(decoding: bytes.prefix(4 * 40), as: UTF8.self)))\""
}

private func shown(_ label: String) -> String {
    let limit = 40
    let visible = label.prefix(limit).map { $0.isNewline || ($0.asciiValue ?? 0x20) < 0x20 ? " " : $0 }
    return String(visible) + (label.count > limit ? "…" : "")
}

/// Distinct voucher ids, each stored once: their bytes back to back in one arena, found through
/// an open-addressing table that compares the bytes (the hash only picks the slot and skips most
/// mismatches without touching the arena).
struct VoucherIdTable {
    private var arena: [UInt8] = []
    /// Id i is arena[starts[i]..<starts[i + 1]].
    private var starts: [UInt32] = [0]
    /// Per slot: the id's hash in the high half and its index + 1 in the low half; 0 when free.
    /// The count is a power of two, at most half of it in use.
    private var slots = [UInt64](repeating: 0, count: 1024)

    var count: Int { starts.count - 1 }
    var byteCount: Int { arena.count }

    func index(of id: UnsafeBufferPointer<UInt8>) -> Int? {
        let hash = Self.hash(id)
        let mask = slots.count - 1
        var slot = Int(hash) & mask
        while slots[slot] != 0 {
            let entry = slots[slot]
            if entry >> 32 == hash, equals(Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1, id) {
                return Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1
            }
            slot = (slot + 1) & mask
        }
        return nil
    }

    /// Adds an id not in the table yet; returns its index.
    mutating func insert(_ id: UnsafeBufferPointer<UInt8>) -> Int {
        if (count + 1) * 2 > slots.count { grow() }
        let index = count
        arena.append(contentsOf: id)
        starts.append(UInt32(arena.count))
        place(Self.hash(id) << 32 | UInt64(index + 1))
        return index
    }

    private func equals(_ index: Int, _ id: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = Int(starts[index])
        let end = Int(starts[index + 1])
        guard end - start == id.count else { return false }
        return arena.withUnsafeBufferPointer { $0[start..<end].elementsEqual(id) }
    }

    private mutating func place(_ entry: UInt64) {
        let mask = slots.count - 1
        var slot = Int(entry >> 32) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = entry
    }

    private mutating func grow() {
        let entries = slots.filter { $0 != 0 }
        slots = [UInt64](repeating: 0, count: slots.count * 2)
        for entry in entries { place(entry) }
    }

    /// FNV-1a, folded to 32 bits.
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return (hash ^ (hash >> 32)) & 0xFFFF_FFFF
    }
}
