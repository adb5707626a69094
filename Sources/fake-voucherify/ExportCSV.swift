import Codecs
import ExpiryDomain

/// Every bucket of a campaign snapshot, one row each, in an export's order: the ACTIVE buckets
/// the member endpoint serves and the EXPIRED ones only exports show. Pure.
struct ExportTable {
    struct Row {
        /// Index into `members`.
        let member: Int32
        /// Index into the member's `buckets`, running on into its `expiredBuckets`.
        let bucket: Int32
        /// Days since 1970 of `expires_at`; `Int32.max` for a bucket that never expires, which
        /// so sorts after every date (last ascending, first descending).
        let day: Int32
    }

    let campaignId: String
    /// The snapshot's members, ascending by card code.
    let members: [LoyaltyMember]
    let rows: [Row]

    init(campaignId: String, snapshot: [String: LoyaltyMember], order: ExportParameters.Order?) {
        self.campaignId = campaignId
        members = snapshot.values.sorted { $0.code < $1.code }
        var rows: [Row] = []
        rows.reserveCapacity(members.reduce(0) { $0 + $1.buckets.count + $1.expiredBuckets.count })
        for (memberIndex, member) in members.enumerated() {
            for (bucketIndex, bucket) in member.buckets.enumerated() {
                rows.append(Row(member: Int32(memberIndex), bucket: Int32(bucketIndex), day: ExportTable.day(bucket, sorting: order != nil)))
            }
            for (expiredIndex, bucket) in member.expiredBuckets.enumerated() {
                rows.append(Row(member: Int32(memberIndex), bucket: Int32(member.buckets.count + expiredIndex),
                                day: ExportTable.day(bucket, sorting: order != nil)))
            }
        }
        // Ties keep member and bucket order, so the same snapshot always gives the same CSV.
        switch order {
        case nil:
            break
        case .ascending:
            rows.sort { ($0.day, $0.member, $0.bucket) < ($1.day, $1.member, $1.bucket) }
        case .descending:
            rows.sort { ($1.day, $0.member, $0.bucket) < ($0.day, $1.member, $1.bucket) }
        }
        self.rows = rows
    }

    /// The sort key of `bucket`; only worked out when the rows are to be sorted by it.
    private static func day(_ bucket: PointsBucket, sorting: Bool) -> Int32 {
        guard sorting, let text = bucket.expiresAt, let date = CalendarDate(iso: text) else { return .max }
        // Dates were validated on input; one out of Int32's range of days cannot occur.
        return Int32(clamping: date.daysSince1970)
    }

    func member(of row: Row) -> LoyaltyMember { members[Int(row.member)] }

    func bucket(of row: Row) -> PointsBucket {
        let member = members[Int(row.member)]
        let index = Int(row.bucket)
        return index < member.buckets.count ? member.buckets[index] : member.expiredBuckets[index - member.buckets.count]
    }
}

/// The CSV body of an export, made piece by piece: a UTF-8 BOM, a header row of human-readable
/// labels, one row per bucket, CRLF after every row, RFC 4180 quoting for any field holding a
/// comma, a quote, CR or LF. The Status column is always quoted, header included, so a client's
/// parser meets quoting in every export. Pure.
struct ExportCSV {
    static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
    static let alwaysQuoted: ExportField = .status

    let table: ExportTable
    let columns: [ExportField]
    /// The next row to write; nil until the BOM and header are out.
    private var nextRow: Int?

    init(table: ExportTable, columns: [ExportField]) {
        self.table = table
        self.columns = columns
    }

    /// Whole rows adding up to about `targetBytes` (the first piece starts with the BOM and the
    /// header); nil once everything has been given.
    mutating func nextPiece(targetBytes: Int) -> [UInt8]? {
        var piece: [UInt8] = []
        piece.reserveCapacity(targetBytes + 256)
        guard var row = nextRow else {
            piece += ExportCSV.byteOrderMark
            appendRecord(columns.map(\.label), to: &piece)
            nextRow = 0
            return piece
        }
        guard row < table.rows.count else { return nil }
        while row < table.rows.count, piece.count < targetBytes {
            appendRow(table.rows[row], to: &piece)
            row += 1
        }
        nextRow = row
        return piece
    }

    private func appendRow(_ row: ExportTable.Row, to out: inout [UInt8]) {
        let member = table.member(of: row)
        let bucket = table.bucket(of: row)
        for (index, column) in columns.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            let quoted = column == ExportCSV.alwaysQuoted
            switch column {
            case .id: ExportCSV.appendField(bucket.id, alwaysQuoted: quoted, to: &out)
            case .campaignId: ExportCSV.appendField(table.campaignId, alwaysQuoted: quoted, to: &out)
            case .voucherId: ExportCSV.appendField(member.voucherId, alwaysQuoted: quoted, to: &out)
            case .points:
                if bucket.points < 0 { out.append(UInt8(ascii: "-")) }
                appendDecimal(bucket.points.magnitude, to: &out)
            case .status: ExportCSV.appendField(bucket.status, alwaysQuoted: quoted, to: &out)
            case .expiresAt: ExportCSV.appendField(bucket.expiresAt ?? "", alwaysQuoted: quoted, to: &out)
            }
        }
        out += [0x0D, 0x0A]
    }

    private func appendRecord(_ fields: [String], to out: inout [UInt8]) {
        for (index, field) in fields.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            ExportCSV.appendField(field, alwaysQuoted: columns[index] == ExportCSV.alwaysQuoted, to: &out)
        }
        out += [0x0D, 0x0A]
    }

    /// `text` as one CSV field: quoted, with quotes doubled, when it must be or `alwaysQuoted`.
    static func appendField(_ text: String, alwaysQuoted: Bool, to out: inout [UInt8]) {
        let mustQuote = text.utf8.contains { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0D || $0 == 0x0A }
        guard mustQuote || alwaysQuoted else {
            out += text.utf8
            return
        }
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\"") { out.append(byte) }
            out.append(byte)
        }
        out.append(UInt8(ascii: "\""))
    }
}
