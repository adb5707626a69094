/// A campaign's points expiration, aggregated from Voucherify's export: what GetCampaignExpiration
/// answers from, kept in Redis in its compact binary form (`encoded()`).
///
/// Every figure is the sum over the campaign's members of what `MemberExpiration` says for each
/// (a card is a member): a day lists the cards whose ACTIVE points on it sum to more than 0, with
/// those sums and their buckets with points. It holds no rows and nothing per card: distinct
/// cards over any range come from counts of (previous day, day) pairs (see `range`).
///
/// Days are calendar days, the buckets' last valid days: time zones do not enter here. The caller
/// picks the range's days (for "from today", today in the project's zone).
public struct CampaignAggregate: Equatable, Sendable {
    /// The first non-empty `campaign_id` in the export; empty when it had no such column.
    public let campaignId: String
    /// Sum of the points of ACTIVE buckets, never-expiring ones included (saturating).
    public let activePoints: Int64
    /// Distinct cards (voucher ids) with an ACTIVE bucket holding points > 0.
    public let cards: Int64
    /// Days with points, ascending.
    public let days: [CampaignDay]
    public let rows: ExportRowCounts

    // The pairs behind distinct-card counts. For the day at index i, entries
    // pairStarts[i]..<pairStarts[i + 1] say how many cards (`pairCards`) have that day as a date
    // and `previousDays` as their date just before it (`noPreviousDay`: it is their first),
    // ascending by previous day. A day's `cards` is the sum of its pairs' counts.
    let previousDays: [Int32]
    let pairCards: [Int64]
    let pairStarts: [Int]

    /// Below every real day number, so "previous day < from" holds for first dates.
    static let noPreviousDay = Int32.min

    init(
        campaignId: String, activePoints: Int64, cards: Int64, days: [CampaignDay], rows: ExportRowCounts,
        previousDays: [Int32], pairCards: [Int64], pairStarts: [Int]
    ) {
        self.campaignId = campaignId
        self.activePoints = activePoints
        self.cards = cards
        self.days = days
        self.rows = rows
        self.previousDays = previousDays
        self.pairCards = pairCards
        self.pairStarts = pairStarts
    }

    /// Last valid days with points, ascending (for `DeductionSchedule.nextDeduction`).
    public var lastValidDays: [CalendarDate] { days.map(\.date) }

    /// The days from `from` to `to`, both inclusive (nil: unbounded on that side), their points,
    /// and the distinct cards with points on any of them.
    ///
    /// Distinct cards are exact: let a card's dates be d1 < … < dk and d0 = "none" (below every
    /// day). It has a date in [from, to] exactly when exactly one of its pairs (d(i-1), di) has
    /// d(i-1) < from ≤ di ≤ to: the pair of its first date in the range (the date before it is
    /// below `from`, or it would be in the range and earlier); any later date in the range
    /// follows one at or above `from`. So the count is the sum of the pairs so placed.
    public func range(from: CalendarDate?, to: CalendarDate?) -> CampaignRange {
        let lower = from.map { date in firstDayIndex { $0 >= date } } ?? 0
        let upper = to.map { date in firstDayIndex { $0 > date } } ?? days.count
        guard lower < upper else { return CampaignRange(expiringPoints: 0, expiringCards: 0, days: []) }
        // Without a lower bound only first dates qualify: "none" is the only day below it.
        let fromDay = from.map { Int32($0.daysSince1970) } ?? Self.noPreviousDay + 1
        var points: Int64 = 0
        var cards: Int64 = 0
        for index in lower..<upper {
            points = points.addingSaturating(days[index].points)
            for pair in pairStarts[index]..<pairStarts[index + 1] {
                guard previousDays[pair] < fromDay else { break }
                cards = cards.addingSaturating(pairCards[pair])
            }
        }
        return CampaignRange(expiringPoints: points, expiringCards: cards, days: Array(days[lower..<upper]))
    }

    /// The first index whose date satisfies `isAtOrPast` (which must be false, then true, along
    /// the ascending days), or `days.count`.
    private func firstDayIndex(_ isAtOrPast: (CalendarDate) -> Bool) -> Int {
        var low = 0
        var high = days.count
        while low < high {
            let middle = low + (high - low) / 2
            if isAtOrPast(days[middle].date) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

/// One last valid day of a campaign's points.
public struct CampaignDay: Equatable, Sendable {
    public var date: CalendarDate
    /// ACTIVE points of the cards counted in `cards` (each card's sum that day is > 0).
    public var points: Int64
    /// Their buckets with points > 0 that day.
    public var buckets: Int64
    /// Cards whose points that day sum to more than 0.
    public var cards: Int64

    public init(date: CalendarDate, points: Int64, buckets: Int64, cards: Int64) {
        self.date = date
        self.points = points
        self.buckets = buckets
        self.cards = cards
    }
}

/// What expires within a range of days.
public struct CampaignRange: Equatable, Sendable {
    public var expiringPoints: Int64
    /// Distinct cards with points on at least one day of the range.
    public var expiringCards: Int64
    public var days: [CampaignDay]

    public init(expiringPoints: Int64, expiringCards: Int64, days: [CampaignDay]) {
        self.expiringPoints = expiringPoints
        self.expiringCards = expiringCards
        self.days = days
    }
}

/// How the export's data rows were used: `total` = `counted` + `skipped` + `malformed`.
public struct ExportRowCounts: Equatable, Sendable {
    /// Rows kept as samples of malformed ones.
    public static let sampleLimit = 5

    public var total: Int64
    /// ACTIVE rows, aggregated.
    public var counted: Int64
    /// Rows with another status (EXPIRED, …): well-formed, not aggregated.
    public var skipped: Int64
    /// Rows that could not be read: they changed no figure.
    public var malformed: Int64
    /// Why the first malformed rows were refused (`line 17: points "abc" is not an integer`).
    public var samples: [String]

    public init(total: Int64 = 0, counted: Int64 = 0, skipped: Int64 = 0, malformed: Int64 = 0, samples: [String] = []) {
        self.total = total
        self.counted = counted
        self.skipped = skipped
        self.malformed = malformed
        self.samples = samples
    }
}

// MARK: - Binary form

// Version 1, after the magic "PXCA" and the version byte; integers are LEB128 varints, signed
// ones zigzag-encoded:
//   campaign id (length, UTF-8) · active points (signed) · cards · rows total, counted, skipped,
//   malformed · samples (count, then length + UTF-8 each) · days (count), each:
//     day number (signed, since 1970-01-01; after the first: the gap from the day before, ≥ 1) ·
//     points · buckets · cards with no previous day · pairs with one (count), each: the gap from
//     the previous day below (the first: its distance below the day; ascending, all below the
//     day) · cards (≥ 1).
// A day's cards are not stored: they are the sum of its pairs.
extension CampaignAggregate {
    static let magic: [UInt8] = Array("PXCA".utf8)
    static let formatVersion: UInt8 = 1

    public func encoded() -> [UInt8] {
        var out = BinaryWriter()
        out.bytes.append(contentsOf: Self.magic)
        out.bytes.append(Self.formatVersion)
        out.append(text: campaignId)
        out.append(signed: activePoints)
        out.append(count: cards)
        for count in [rows.total, rows.counted, rows.skipped, rows.malformed] { out.append(count: count) }
        out.append(count: rows.samples.count)
        for sample in rows.samples { out.append(text: sample) }
        out.append(count: days.count)
        var dayBefore: Int32?
        for (index, day) in days.enumerated() {
            let dayNumber = Int32(day.date.daysSince1970)
            if let dayBefore { out.append(count: dayNumber - dayBefore) } else { out.append(signed: Int64(dayNumber)) }
            dayBefore = dayNumber
            out.append(count: day.points)
            out.append(count: day.buckets)
            var pairs = pairStarts[index]..<pairStarts[index + 1]
            var firstDates: Int64 = 0
            if let first = pairs.first, previousDays[first] == Self.noPreviousDay {
                firstDates = pairCards[first]
                pairs = pairs.dropFirst()
            }
            out.append(count: firstDates)
            out.append(count: pairs.count)
            var below = dayNumber
            for pair in pairs {
                let previous = previousDays[pair]
                out.append(count: pair == pairs.first ? dayNumber - previous : previous - below)
                below = previous
                out.append(count: pairCards[pair])
            }
        }
        return out.bytes
    }

    /// Reads `encoded()` back; refuses truncated, inconsistent or unknown data (never traps).
    public init(encoded: [UInt8]) throws(ExportFormatError) {
        var input = BinaryReader(bytes: encoded)
        guard encoded.starts(with: Self.magic) else { throw input.invalid("it does not start with the campaign aggregate magic") }
        input.index = Self.magic.count
        let version = try input.byte()
        guard version == Self.formatVersion else { throw input.invalid("version \(version) is unknown") }
        let campaignId = try input.text()
        let activePoints = try input.signed()
        let cards = try input.count()
        var rows = ExportRowCounts(total: try input.count(), counted: try input.count(), skipped: try input.count(),
                                   malformed: try input.count())
        let (usedRows, overflowed) = rows.counted.addingReportingOverflow(rows.skipped)
        let (readRows, overflowedAgain) = usedRows.addingReportingOverflow(rows.malformed)
        guard !overflowed, !overflowedAgain, readRows == rows.total else { throw input.invalid("its row counts do not add up") }
        let sampleCount = try input.count()
        guard sampleCount <= ExportRowCounts.sampleLimit else { throw input.invalid("it has \(sampleCount) samples") }
        for _ in 0..<sampleCount { rows.samples.append(try input.text()) }

        let dayCount = try input.count()
        var days: [CampaignDay] = []
        var previousDays: [Int32] = []
        var pairCards: [Int64] = []
        var pairStarts = [0]
        // Every day takes at least five bytes: no count read here can make us allocate more than the input.
        days.reserveCapacity(min(Int(dayCount), encoded.count / 5))
        var dayBefore: Int?
        for _ in 0..<dayCount {
            let dayNumber: Int
            if let dayBefore {
                let gap = try input.count()
                guard gap >= 1, gap <= Int64(Int32.max) else { throw input.invalid("its days are not ascending") }
                dayNumber = dayBefore + Int(gap)
            } else {
                let first = try input.signed()
                guard let exact = Int(exactly: first), Int32(exactly: exact) != nil else { throw input.invalid("day \(first) is out of range") }
                dayNumber = exact
            }
            guard let date = CalendarDate(validatingDaysSince1970: dayNumber) else { throw input.invalid("day \(dayNumber) is out of range") }
            dayBefore = dayNumber
            let points = try input.count()
            let buckets = try input.count()
            guard points > 0, buckets > 0 else { throw input.invalid("day \(date) has no points or no buckets") }
            var dayCards: Int64 = 0
            let firstDates = try input.count()
            if firstDates > 0 {
                previousDays.append(Self.noPreviousDay)
                pairCards.append(firstDates)
                dayCards = firstDates
            }
            let pairCount = try input.count()
            var below = dayNumber
            for pair in 0..<pairCount {
                let gap = try input.count()
                let previous = pair == 0 ? dayNumber - Int(min(gap, Int64(Int32.max))) : below + Int(min(gap, Int64(Int32.max)))
                guard gap >= 1, previous < dayNumber, CalendarDate(validatingDaysSince1970: previous) != nil else {
                    throw input.invalid("day \(date) has a previous day out of order")
                }
                below = previous
                let count = try input.count()
                guard count >= 1 else { throw input.invalid("day \(date) has a pair with no cards") }
                previousDays.append(Int32(previous))
                pairCards.append(count)
                dayCards = dayCards.addingSaturating(count)
            }
            guard dayCards > 0 else { throw input.invalid("day \(date) has no cards") }
            pairStarts.append(previousDays.count)
            days.append(CampaignDay(date: date, points: points, buckets: buckets, cards: dayCards))
        }
        guard input.index == encoded.count else { throw input.invalid("\(encoded.count - input.index) bytes follow its end") }
        self.init(campaignId: campaignId, activePoints: activePoints, cards: cards, days: days, rows: rows,
                  previousDays: previousDays, pairCards: pairCards, pairStarts: pairStarts)
    }
}

private struct BinaryWriter {
    var bytes: [UInt8] = []

    mutating func append(varint value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// A count or other non-negative number.
    mutating func append(count: some BinaryInteger) {
        append(varint: UInt64(count))
    }

    mutating func append(signed value: Int64) {
        append(varint: UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func append(text: String) {
        append(count: text.utf8.count)
        bytes.append(contentsOf: text.utf8)
    }
}

private struct BinaryReader {
    let bytes: [UInt8]
    var index = 0

    func invalid(_ reason: String) -> ExportFormatError {
        .invalidStoredAggregate(reason)
    }

    mutating func byte() throws(ExportFormatError) -> UInt8 {
        guard index < bytes.count else { throw invalid("it is truncated") }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func varint() throws(ExportFormatError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try byte()
            guard shift < 63 || byte <= 1 else { throw invalid("a number at byte \(index - 1) is too long") }
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }

    /// A non-negative Int64.
    mutating func count() throws(ExportFormatError) -> Int64 {
        let value = try varint()
        guard let count = Int64(exactly: value) else { throw invalid("a count at byte \(index) is out of range") }
        return count
    }

    mutating func signed() throws(ExportFormatError) -> Int64 {
        let value = try varint()
        return Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
    }

    mutating func text() throws(ExportFormatError) -> String {
        let length = try count()
        guard length <= bytes.count - index else { throw invalid("it is truncated") }
        let end = index + Int(length)
        guard let text = String(validating: bytes[index..<end], as: UTF8.self) else {
            throw invalid("a text at byte \(index) is not UTF-8")
        }
        index = end
        return text
    }
}
