import Glibc

/// The members a warm job works on: distinct card codes in input order, and what was skipped.
public struct MemberList: Equatable, Sendable {
    public var codes: [String]
    public var blankLines: Int
    public var duplicateLines: Int

    public init(codes: [String], blankLines: Int = 0, duplicateLines: Int = 0) {
        self.codes = codes
        self.blankLines = blankLines
        self.duplicateLines = duplicateLines
    }
}

/// Where the member codes come from.
public enum MemberSource: Equatable, Sendable {
    case file(String)
    case standardInput

    /// How messages name it.
    public var name: String {
        switch self {
        case .file(let path): return path
        case .standardInput: return "standard input"
        }
    }
}

/// A problem with how the job was asked to run: one line, exit code 2.
public struct WarmUsageError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads member codes: one per line, or a CSV whose header row has a `code` column.
public enum MemberInput {
    /// Reads the whole source (a file or standard input) and parses it.
    public static func read(_ source: MemberSource) throws(WarmUsageError) -> MemberList {
        let bytes: [UInt8]
        switch source {
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw WarmUsageError("cannot read members file \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            bytes = try readAll(fd, name: path)
        case .standardInput:
            bytes = try readAll(STDIN_FILENO, name: source.name)
        }
        return try parse(bytes, source: source.name)
    }

    /// Decides the format from the first line: a CSV when that line, read as CSV, has a field
    /// `code` (any case, spaces around it ignored); a plain list when it has a single field.
    /// Codes are trimmed; blank lines and repeats are skipped and counted. Quoting is strict
    /// (RFC 4180): a quote left open, text after a closing quote, or a code with a line break in
    /// it is refused naming its line, rather than read as some other code.
    public static func parse(_ bytes: [UInt8], source: String) throws(WarmUsageError) -> MemberList {
        // Spreadsheets often start an export with a UTF-8 byte-order mark.
        let utf8BOM: [UInt8] = [0xEF, 0xBB, 0xBF]
        let text = bytes.starts(with: utf8BOM) ? bytes.dropFirst(3) : bytes[...]
        var csv = CSVRecordReader(text, delimiter: UInt8(ascii: ","), source: source)
        let header = try csv.next()?.fields ?? []
        var collector = MemberCollector(source: source)
        if let codeColumn = header.firstIndex(where: { trimmed($0).lowercased() == "code" }) {
            while let record = try csv.next() {
                try collector.add(codeColumn < record.fields.count ? record.fields[codeColumn] : "", line: record.line)
            }
        } else if header.count > 1 {
            let columns = header.map { trimmed($0) }.joined(separator: ", ")
            throw WarmUsageError("no `code` column in \(source) (columns: \(columns))")
        } else if let field = header.first, let separator = otherSeparator(in: trimmed(field)) {
            // Read with commas, such a file would become one code per line, each a whole row.
            throw WarmUsageError("\(source) is separated by \(separator) (first line: \(trimmed(field))): "
                + "save it as a CSV with commas and a `code` column, or list one code per line")
        } else {
            // One code per line; a line may be one quoted field (`"A-1"`), as a one-column CSV.
            var lines = CSVRecordReader(text, delimiter: nil, source: source)
            while let record = try lines.next() { try collector.add(record.fields[0], line: record.line) }
        }
        guard !collector.list.codes.isEmpty else { throw WarmUsageError("no members in \(source)") }
        return collector.list
    }

    /// The name of a spreadsheet's other field separator when a line holds one.
    private static func otherSeparator(in line: String) -> String? {
        if line.contains(";") { return "semicolons" }
        if line.contains("\t") { return "tabs" }
        return nil
    }

    private static func readAll(_ fd: Int32, name: String) throws(WarmUsageError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = Glibc.read(fd, &chunk, chunk.count)
            if count > 0 {
                bytes.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                return bytes
            } else if errno != EINTR {
                throw WarmUsageError("cannot read members file \(name): \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// Spaces, tabs and line ends around a value (a stray `\r` from a CRLF file included).
func trimmed(_ value: some StringProtocol) -> String {
    let isSpace: (Character) -> Bool = { $0.isWhitespace }
    guard let start = value.firstIndex(where: { !isSpace($0) }), let end = value.lastIndex(where: { !isSpace($0) }) else { return "" }
    return String(value[start...end])
}

private struct MemberCollector {
    let source: String
    var list = MemberList(codes: [])
    private var seen: Set<String> = []

    init(source: String) { self.source = source }

    mutating func add(_ raw: String, line: Int) throws(WarmUsageError) {
        let code = trimmed(raw)
        if code.contains(where: \.isNewline) {
            throw WarmUsageError("line \(line) of \(source): the code has a line break in it")
        } else if code.isEmpty {
            list.blankLines += 1
        } else if seen.insert(code).inserted {
            list.codes.append(code)
        } else {
            list.duplicateLines += 1
        }
    }
}

/// CSV records as RFC 4180 has them, each with the line it starts on. The CSV library reads
/// leniently (a quote left open swallows the rest of the input; what follows a closing quote is
/// dropped) and says nothing about it; here either is an error naming the line.
private struct CSVRecordReader {
    struct Record {
        var fields: [String]
        var line: Int
    }

    private static let quote = UInt8(ascii: "\""), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")

    private let bytes: ArraySlice<UInt8>
    /// nil: a record is one field, the whole line (a plain list, whose codes may hold commas).
    private let delimiter: UInt8?
    private let source: String
    private var position: Int
    private var line = 1

    init(_ bytes: ArraySlice<UInt8>, delimiter: UInt8?, source: String) {
        self.bytes = bytes
        self.delimiter = delimiter
        self.source = source
        position = bytes.startIndex
    }

    /// The next record; nil at the end (the line break ending the last line starts none).
    mutating func next() throws(WarmUsageError) -> Record? {
        guard position < bytes.endIndex else { return nil }
        let recordLine = line
        var fields: [String] = []
        while true {
            fields.append(try field())
            guard position < bytes.endIndex else { break }
            let separator = bytes[position]
            position += 1
            if separator == delimiter { continue }
            // A line break: CRLF, LF or a lone CR.
            if separator == Self.cr, position < bytes.endIndex, bytes[position] == Self.lf { position += 1 }
            line += 1
            break
        }
        return Record(fields: fields, line: recordLine)
    }

    /// Reads one field and stops at what ends it: the delimiter, a line break, or the end.
    private mutating func field() throws(WarmUsageError) -> String {
        let start = position
        // Blanks before an opening quote are layout, as after the closing one.
        let firstVisible = bytes[start...].firstIndex { !isBlank($0) } ?? bytes.endIndex
        guard firstVisible < bytes.endIndex, bytes[firstVisible] == Self.quote else {
            position = bytes[start...].firstIndex { $0 == delimiter || $0 == Self.cr || $0 == Self.lf } ?? bytes.endIndex
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }
        let openedOnLine = line
        position = firstVisible + 1
        var value: [UInt8] = []
        while true {
            guard position < bytes.endIndex else {
                throw WarmUsageError("line \(openedOnLine) of \(source): a quote opens a value that never closes")
            }
            let byte = bytes[position]
            position += 1
            if byte == Self.quote {
                // A doubled quote is one quote in the value; a single one closes it.
                guard position < bytes.endIndex, bytes[position] == Self.quote else { break }
                position += 1
            } else if byte == Self.lf || (byte == Self.cr && (position == bytes.endIndex || bytes[position] != Self.lf)) {
                line += 1
            }
            value.append(byte)
        }
        position = bytes[position...].firstIndex { !isBlank($0) } ?? bytes.endIndex
        if position < bytes.endIndex, bytes[position] != delimiter, bytes[position] != Self.cr, bytes[position] != Self.lf {
            throw WarmUsageError("line \(line) of \(source): text after a closing quote (a quote inside a quoted value is written twice)")
        }
        return String(decoding: value, as: UTF8.self)
    }

    private func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
}
