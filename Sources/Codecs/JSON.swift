/// A parsed JSON document. Numbers keep their literal text so that int64 values survive
/// untouched and a payload can be re-serialised exactly (webhook signatures depend on it).
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// An integer given as a JSON number or as a decimal string (ProtoJSON accepts both for int64).
    /// Fractions, exponents, empty strings and out-of-range values give nil.
    public var int64Value: Int64? {
        switch self {
        case .number(let text), .string(let text): return parseDecimalInt64(text.utf8)
        default: return nil
        }
    }

    /// A JSON number holding exactly `value` (its decimal text).
    public static func integer(_ value: some BinaryInteger) -> JSONValue {
        .number(String(value))
    }
}

/// A JSON object with its members in document order. Duplicate keys are kept; lookups take the
/// last one, as ProtoJSON and most parsers do.
public struct JSONObject: Equatable, Sendable {
    public var members: [(key: String, value: JSONValue)]

    public init(members: [(key: String, value: JSONValue)] = []) {
        self.members = members
    }

    public subscript(key: String) -> JSONValue? {
        for member in members.reversed() where member.key == key {
            return member.value
        }
        return nil
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

/// `["a": x, "b": y]` builds an object with its members in the order written (duplicates kept).
extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(members: elements.map { (key: $0.0, value: $0.1) })
    }
}

public struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    /// Byte offset in the input where the problem was found.
    public let offset: Int
    public let reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "\(reason) at byte \(offset)" }
}

public enum JSONParser {
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws -> JSONValue {
        try parseDocument(bytes, maxDepth: maxDepth)
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws -> JSONValue {
        try parseDocument(bytes, maxDepth: maxDepth)
    }

    // Typed-throws entry points for in-module callers that map syntax errors to domain errors.
    public static func parseDocument(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) throws(JSONSyntaxError) -> JSONValue {
        var reader = JSONReader(input: bytes, maxDepth: maxDepth)
        return try reader.parseDocument()
    }

    public static func parseDocument(_ bytes: [UInt8], maxDepth: Int) throws(JSONSyntaxError) -> JSONValue {
        try withUnsafeBytesTyped(bytes) { buffer throws(JSONSyntaxError) in try parseDocument(buffer, maxDepth: maxDepth) }
    }
}

/// The bytes the parsers here compare against (the JSON and CSV readers share them).
@usableFromInline
enum ASCII {
    @usableFromInline static let quote = UInt8(ascii: "\"")
    @usableFromInline static let backslash = UInt8(ascii: "\\")
    @usableFromInline static let slash = UInt8(ascii: "/")
    @usableFromInline static let comma = UInt8(ascii: ",")
    @usableFromInline static let colon = UInt8(ascii: ":")
    @usableFromInline static let openBrace = UInt8(ascii: "{")
    @usableFromInline static let closeBrace = UInt8(ascii: "}")
    @usableFromInline static let openBracket = UInt8(ascii: "[")
    @usableFromInline static let closeBracket = UInt8(ascii: "]")
    @usableFromInline static let minus = UInt8(ascii: "-")
    @usableFromInline static let plus = UInt8(ascii: "+")
    @usableFromInline static let dot = UInt8(ascii: ".")
    @usableFromInline static let zero = UInt8(ascii: "0")
    @usableFromInline static let nine = UInt8(ascii: "9")
    @usableFromInline static let cr = UInt8(ascii: "\r")
    @usableFromInline static let lf = UInt8(ascii: "\n")
}

/// Recursive-descent RFC 8259 parser over raw bytes.
private struct JSONReader {
    let input: UnsafeRawBufferPointer
    let maxDepth: Int
    var index = 0
    var depth = 0

    init(input: UnsafeRawBufferPointer, maxDepth: Int) {
        self.input = input
        self.maxDepth = maxDepth
    }

    func fail(_ reason: String, at offset: Int? = nil) -> JSONSyntaxError {
        JSONSyntaxError(offset: offset ?? index, reason: reason)
    }

    mutating func parseDocument() throws(JSONSyntaxError) -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        if index != input.count { throw fail("unexpected data after the JSON value") }
        return value
    }

    mutating func skipWhitespace() {
        while index < input.count {
            switch input[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        guard index < input.count else { throw fail("unexpected end of input") }
        switch input[index] {
        case ASCII.openBrace: return try parseObject()
        case ASCII.openBracket: return try parseArray()
        case ASCII.quote: return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case ASCII.minus, ASCII.zero...ASCII.nine: return .number(try parseNumber())
        default: throw fail("unexpected character")
        }
    }

    mutating func expectLiteral(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard input.count - index >= count else { throw fail("invalid literal") }
        let start = word.utf8Start
        for k in 0..<count where input[index + k] != start[k] {
            throw fail("invalid literal")
        }
        index += count
    }

    mutating func enterContainer() throws(JSONSyntaxError) {
        depth += 1
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth) levels") }
    }

    mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
        try enterContainer()
        index += 1
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if index < input.count, input[index] == ASCII.closeBrace {
            index += 1
            depth -= 1
            return .object(JSONObject(members: members))
        }
        while true {
            skipWhitespace()
            guard index < input.count, input[index] == ASCII.quote else {
                throw fail("expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < input.count, input[index] == ASCII.colon else { throw fail("expected ':'") }
            index += 1
            let value = try parseValue()
            members.append((key: key, value: value))
            skipWhitespace()
            guard index < input.count else { throw fail("unexpected end of input in object") }
            switch input[index] {
            case ASCII.comma:
                index += 1
            case ASCII.closeBrace:
                index += 1
                depth -= 1
                return .object(JSONObject(members: members))
            default:
                throw fail("expected ',' or '}'")
            }
        }
    }

    mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
        try enterContainer()
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < input.count, input[index] == ASCII.closeBracket {
            index += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue())
            skipWhitespace()
            guard index < input.count else { throw fail("unexpected end of input in array") }
            switch input[index] {
            case ASCII.comma:
                index += 1
            case ASCII.closeBracket:
                index += 1
                depth -= 1
                return .array(elements)
            default:
                throw fail("expected ',' or ']'")
            }
        }
    }

    /// Parses a string starting at its opening quote. Unescaped runs are copied in bulk; UTF-8 is
    /// validated once at the end (escapes only ever add valid UTF-8).
    mutating func parseString() throws(JSONSyntaxError) -> String {
        let openQuote = index
        index += 1
        var runStart = index
        var highBits: UInt8 = 0
        // Fast path: no escapes, the common case for keys and codes.
        while index < input.count {
            let byte = input[index]
            if byte == ASCII.quote || byte == ASCII.backslash || byte < 0x20 { break }
            highBits |= byte
            index += 1
        }
        guard index < input.count else { throw fail("unterminated string", at: openQuote) }
        if input[index] == ASCII.quote {
            let run = UnsafeRawBufferPointer(rebasing: input[runStart..<index])
            index += 1
            return try makeString(run, asciiOnly: highBits < 0x80, at: openQuote)
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(index - runStart + 16)
        while true {
            guard index < input.count else { throw fail("unterminated string", at: openQuote) }
            let byte = input[index]
            if byte == ASCII.quote {
                buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
                index += 1
                return try withUnsafeBytesTyped(buffer) { bytes throws(JSONSyntaxError) in
                    try makeString(bytes, asciiOnly: false, at: openQuote)
                }
            }
            if byte < 0x20 { throw fail("control character in string") }
            if byte != ASCII.backslash {
                index += 1
                continue
            }
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
            try appendEscape(to: &buffer)
            runStart = index
        }
    }

    func makeString(_ bytes: UnsafeRawBufferPointer, asciiOnly: Bool, at offset: Int) throws(JSONSyntaxError) -> String {
        if asciiOnly { return String(decoding: bytes, as: UTF8.self) }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw fail("invalid UTF-8 in string", at: offset)
        }
        return string
    }

    /// Decodes one escape sequence starting at the backslash.
    mutating func appendEscape(to buffer: inout [UInt8]) throws(JSONSyntaxError) {
        let escapeStart = index
        guard index + 1 < input.count else { throw fail("unterminated escape") }
        let kind = input[index + 1]
        index += 2
        switch kind {
        case ASCII.quote, ASCII.backslash, ASCII.slash: buffer.append(kind)
        case UInt8(ascii: "b"): buffer.append(0x08)
        case UInt8(ascii: "f"): buffer.append(0x0C)
        case UInt8(ascii: "n"): buffer.append(0x0A)
        case UInt8(ascii: "r"): buffer.append(0x0D)
        case UInt8(ascii: "t"): buffer.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try readHex4()
            if (0xD800...0xDBFF).contains(scalar) {
                // A high surrogate must be followed by an escaped low surrogate; lone halves are
                // not characters and could not be re-encoded, so they are rejected.
                guard index + 1 < input.count, input[index] == ASCII.backslash, input[index + 1] == UInt8(ascii: "u") else {
                    throw fail("unpaired surrogate in \\u escape", at: escapeStart)
                }
                index += 2
                let low = try readHex4()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw fail("unpaired surrogate in \\u escape", at: escapeStart)
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            // Nil exactly for a low surrogate standing alone.
            guard let unicodeScalar = Unicode.Scalar(scalar) else {
                throw fail("unpaired surrogate in \\u escape", at: escapeStart)
            }
            buffer.append(contentsOf: unicodeScalar.utf8)
        default:
            throw fail("invalid escape", at: escapeStart)
        }
    }

    mutating func readHex4() throws(JSONSyntaxError) -> UInt32 {
        guard input.count - index >= 4 else { throw fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = hexDigitValue(input[index]) else { throw fail("invalid hex digit in \\u escape") }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    mutating func parseNumber() throws(JSONSyntaxError) -> String {
        let start = index
        if input[index] == ASCII.minus { index += 1 }
        guard index < input.count, isDigit(input[index]) else { throw fail("invalid number", at: start) }
        if input[index] == ASCII.zero {
            index += 1
        } else {
            skipDigits()
        }
        if index < input.count, input[index] == ASCII.dot {
            index += 1
            guard index < input.count, isDigit(input[index]) else { throw fail("invalid number", at: start) }
            skipDigits()
        }
        if index < input.count, input[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < input.count, input[index] == ASCII.plus || input[index] == ASCII.minus { index += 1 }
            guard index < input.count, isDigit(input[index]) else { throw fail("invalid number", at: start) }
            skipDigits()
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: input[start..<index]), as: UTF8.self)
    }

    mutating func skipDigits() {
        while index < input.count, isDigit(input[index]) { index += 1 }
    }
}

/// `Array.withUnsafeBytes` only rethrows untyped errors; this keeps the typed error.
func withUnsafeBytesTyped<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result: Result<R, E> = bytes.withUnsafeBytes { buffer in
        do throws(E) { return .success(try body(buffer)) } catch { return .failure(error) }
    }
    return try result.get()
}

@inlinable @inline(__always)
public func isDigit(_ byte: UInt8) -> Bool { byte >= ASCII.zero && byte <= ASCII.nine }

public func hexDigitValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case ASCII.zero...ASCII.nine: return byte - ASCII.zero
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Strict decimal integer: optional '-', digits only, no leading '+', fits in Int64. Inlinable:
/// other modules call it in hot loops (a campaign export's points), where an unspecialised
/// generic call cost 40% of the aggregation's time.
@inlinable
public func parseDecimalInt64(_ text: some Collection<UInt8>) -> Int64? {
    var iterator = text.makeIterator()
    guard var byte = iterator.next() else { return nil }
    let negative = byte == ASCII.minus
    if negative {
        guard let next = iterator.next() else { return nil }
        byte = next
    }
    var magnitude: UInt64 = 0
    while true {
        guard isDigit(byte) else { return nil }
        let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
        let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - ASCII.zero))
        if o1 || o2 { return nil }
        magnitude = sum
        guard let next = iterator.next() else { break }
        byte = next
    }
    if negative {
        guard magnitude <= Int64.min.magnitude else { return nil }
        return Int64(truncatingIfNeeded: 0 &- magnitude)
    }
    return Int64(exactly: magnitude)
}

/// Compact JSON output into a byte buffer.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends bytes that are already valid JSON (punctuation, pre-encoded fragments).
    public mutating func appendRaw(_ raw: StaticString) {
        raw.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    public mutating func appendRaw(_ raw: some Sequence<UInt8>) {
        bytes.append(contentsOf: raw)
    }

    public mutating func appendRaw(byte: UInt8) {
        bytes.append(byte)
    }

    /// Appends a quoted, escaped string. Escapes exactly what JavaScript's JSON.stringify escapes
    /// (`"`, `\`, control characters; \b \f \n \r \t short forms, others as lowercase \u00xx), so
    /// re-serialising a Voucherify payload reproduces the bytes its webhook signature covers.
    public mutating func appendString(_ string: String) {
        var string = string
        string.withUTF8 { appendEscaped($0) }
    }

    public mutating func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        bytes.append(ASCII.quote)
        var runStart = 0
        for (i, byte) in utf8.enumerated() where byte < 0x20 || byte == ASCII.quote || byte == ASCII.backslash {
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
            runStart = i + 1
            bytes.append(ASCII.backslash)
            switch byte {
            case ASCII.quote, ASCII.backslash: bytes.append(byte)
            case 0x08: bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "f"))
            case 0x0A: bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "t"))
            default:
                appendRaw("u00")
                bytes.append(lowerHexDigits[Int(byte >> 4)])
                bytes.append(lowerHexDigits[Int(byte & 0xF)])
            }
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        bytes.append(ASCII.quote)
    }

    /// Appends an integer as a bare JSON number (int32 in ProtoJSON).
    public mutating func appendNumber(_ value: Int64) {
        if value < 0 { bytes.append(ASCII.minus) }
        appendDecimal(value.magnitude, to: &bytes)
    }

    /// Appends a JSON string whose content `write` produces and that needs no escaping (dates,
    /// timestamps: digits and punctuation only).
    public mutating func appendQuoted(_ write: (inout [UInt8]) -> Void) {
        bytes.append(ASCII.quote)
        write(&bytes)
        bytes.append(ASCII.quote)
    }

    /// Appends an int64 as a quoted decimal string, as ProtoJSON emits 64-bit integers.
    public mutating func appendInt64String(_ value: Int64) {
        bytes.append(ASCII.quote)
        appendNumber(value)
        bytes.append(ASCII.quote)
    }
}

extension JSONWriter {
    /// Appends `value` with no whitespace: object members in their order, numbers as their
    /// literal text (which must be valid JSON, as the parser and `JSONValue.integer` give),
    /// strings escaped as `appendString` does.
    public mutating func appendValue(_ value: JSONValue) {
        appendValue(value, depth: nil)
    }

    /// Appends `value` with one member or element per line, two spaces of indentation per level
    /// and `": "` after keys. It differs from `appendValue` only by whitespace outside strings,
    /// so removing that whitespace gives the compact bytes (what webhook signatures cover).
    public mutating func appendPrettyValue(_ value: JSONValue) {
        appendValue(value, depth: 0)
    }

    /// `depth` nil: compact; otherwise the nesting level of the line `value` starts on.
    private mutating func appendValue(_ value: JSONValue, depth: Int?) {
        switch value {
        case .null: appendRaw("null")
        case .bool(true): appendRaw("true")
        case .bool(false): appendRaw("false")
        case .number(let literal): appendRaw(literal.utf8)
        case .string(let string): appendString(string)
        case .array(let elements):
            appendContainer(ASCII.openBracket, ASCII.closeBracket, elements, depth: depth) { writer, element, inner in
                writer.appendValue(element, depth: inner)
            }
        case .object(let object):
            appendContainer(ASCII.openBrace, ASCII.closeBrace, object.members, depth: depth) { writer, member, inner in
                writer.appendString(member.key)
                if inner == nil { writer.appendRaw(":") } else { writer.appendRaw(": ") }
                writer.appendValue(member.value, depth: inner)
            }
        }
    }

    /// Comma-separated items between `open` and `close`; pretty: each on its own line, one level
    /// deeper, and the closing bracket back on the container's level (empty containers stay `[]`).
    private mutating func appendContainer<Item>(_ open: UInt8, _ close: UInt8, _ items: [Item], depth: Int?,
                                                _ appendItem: (inout JSONWriter, Item, Int?) -> Void) {
        bytes.append(open)
        let inner = depth.map { $0 + 1 }
        for (index, item) in items.enumerated() {
            if index > 0 { bytes.append(ASCII.comma) }
            if let inner { appendLineBreak(indentedTo: inner) }
            appendItem(&self, item, inner)
        }
        if let depth, !items.isEmpty { appendLineBreak(indentedTo: depth) }
        bytes.append(close)
    }

    private mutating func appendLineBreak(indentedTo depth: Int) {
        bytes.append(UInt8(ascii: "\n"))
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * depth))
    }
}

/// Decimal digits, zero-padded to `minimumDigits` (at most 20), written with one append: the
/// encoders run on every cache miss and per-byte appends dominated them.
public func appendDecimal(_ value: UInt64, minimumDigits: Int = 1, to out: inout [UInt8]) {
    let capacity = 20 // UInt64.max has 20 digits
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { digits in
        var index = capacity
        var rest = value
        repeat {
            index -= 1
            digits[index] = ASCII.zero + UInt8(rest % 10)
            rest /= 10
        } while rest > 0
        while capacity - index < min(minimumDigits, capacity) {
            index -= 1
            digits[index] = ASCII.zero
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[index...]))
    }
}

