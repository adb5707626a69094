import CSV
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
    /// Codes are trimmed; blank lines and repeats are skipped and counted. CSV is read by the
    /// CSV library (RFC 4180 quoting, CRLF); it reads a malformed quote leniently (a quote left
    /// open takes in the lines after it), so a code that came out with a line break in it is
    /// refused, naming its record, rather than sent as some other code.
    public static func parse(_ bytes: [UInt8], source: String) throws(WarmUsageError) -> MemberList {
        // The library drops a byte-order mark only when it reads from a stream, not from a
        // string; exports from spreadsheets often start with one, so it goes here for both formats.
        let utf8BOM: [UInt8] = [0xEF, 0xBB, 0xBF]
        let text = String(decoding: bytes.starts(with: utf8BOM) ? bytes.dropFirst(3) : bytes[...], as: UTF8.self)
        let firstLine = String(text.prefix { !$0.isNewline })
        let header = csvRecords(firstLine).first ?? []
        var collector = MemberCollector(source: source)
        if let codeColumn = header.firstIndex(where: { trimmed($0).lowercased() == "code" }) {
            for (index, record) in csvRecords(text).enumerated().dropFirst() {
                try collector.add(codeColumn < record.count ? record[codeColumn] : "", place: "record \(index + 1)")
            }
        } else if header.count > 1 {
            let columns = header.map { trimmed($0) }.joined(separator: ", ")
            throw WarmUsageError("no `code` column in \(source) (columns: \(columns))")
        } else if let separator = otherSeparator(in: trimmed(firstLine)) {
            // Read with commas, such a file would become one code per line, each a whole row.
            throw WarmUsageError("\(source) is separated by \(separator) (first line: \(trimmed(firstLine))): "
                + "save it as a CSV with commas and a `code` column, or list one code per line")
        } else {
            // One code per line (codes may hold commas); a line may be one quoted value (`"A-1"`).
            var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            // The newline ending the last line does not start a blank one.
            if lines.last?.isEmpty == true { lines.removeLast() }
            for (index, line) in lines.enumerated() { try collector.add(unquoted(trimmed(line)), place: "line \(index + 1)") }
        }
        guard !collector.list.codes.isEmpty else { throw WarmUsageError("no members in \(source)") }
        return collector.list
    }

    private static func csvRecords(_ text: String) -> [[String]] {
        // Reading from a string cannot fail: the reader throws only for a missing header row,
        // which is not asked for here.
        guard let reader = try? CSVReader(string: text) else { return [] }
        return Array(AnySequence { reader })
    }

    /// `"A ""1"""` → `A "1"`: a plain-list line written as one quoted CSV value.
    private static func unquoted(_ line: String) -> String {
        guard line.count >= 2, line.first == "\"", line.last == "\"" else { return line }
        return String(line.dropFirst().dropLast()).replacing("\"\"", with: "\"")
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

    /// `place`: where the code was read ("line 3", "record 3"), for the error.
    mutating func add(_ raw: String, place: String) throws(WarmUsageError) {
        let code = trimmed(raw)
        if code.contains(where: \.isNewline) {
            throw WarmUsageError("\(place) of \(source): the code has a line break in it (a quote left open?)")
        } else if code.isEmpty {
            list.blankLines += 1
        } else if seen.insert(code).inserted {
            list.codes.append(code)
        } else {
            list.duplicateLines += 1
        }
    }
}
