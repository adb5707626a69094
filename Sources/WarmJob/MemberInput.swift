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
    /// Codes are trimmed; blank lines and repeats are skipped and counted.
    public static func parse(_ bytes: [UInt8], source: String) throws(WarmUsageError) -> MemberList {
        // The library drops a byte-order mark only when it reads from a stream, not from a
        // string; exports from spreadsheets often start with one, so it goes here for both formats.
        let utf8BOM: [UInt8] = [0xEF, 0xBB, 0xBF]
        let text = String(decoding: bytes.starts(with: utf8BOM) ? bytes.dropFirst(3) : bytes[...], as: UTF8.self)
        let firstLine = text.prefix { !$0.isNewline }
        let header = csvRows(String(firstLine)).first ?? []
        var collector = MemberCollector()
        if let codeColumn = header.firstIndex(where: { trimmed($0).lowercased() == "code" }) {
            for row in csvRows(text).dropFirst() {
                collector.add(codeColumn < row.count ? row[codeColumn] : "")
            }
        } else if header.count > 1 {
            let columns = header.map { trimmed($0) }.joined(separator: ", ")
            throw WarmUsageError("no `code` column in \(source) (columns: \(columns))")
        } else {
            var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            // The newline ending the last line does not start a blank one.
            if lines.last?.isEmpty == true { lines.removeLast() }
            for line in lines { collector.add(String(line)) }
        }
        guard !collector.list.codes.isEmpty else { throw WarmUsageError("no members in \(source)") }
        return collector.list
    }

    private static func csvRows(_ text: String) -> [[String]] {
        // Reading from a string cannot fail: the reader throws only for a missing header row,
        // which is not asked for here.
        guard let reader = try? CSVReader(string: text) else { return [] }
        return Array(AnySequence { reader })
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
    var list = MemberList(codes: [])
    private var seen: Set<String> = []

    mutating func add(_ raw: String) {
        let code = trimmed(raw)
        if code.isEmpty {
            list.blankLines += 1
        } else if seen.insert(code).inserted {
            list.codes.append(code)
        } else {
            list.duplicateLines += 1
        }
    }
}
