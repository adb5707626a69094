/// A push-based RFC 4180 reader: the caller hands it chunks of any size, as they arrive, and it
/// reports each record once it ends. Only the current record is held, never the whole input.
///
/// The package already depends on CSV.swift (the warm job reads member files with it), but that
/// library pulls from an `InputStream`, while a download pushes chunks on an event loop that must
/// not block; a byte state machine that keeps its place between chunks fits the push side. A
/// quote, a CRLF or a multi-byte UTF-8 character may be split across chunks: fields are bytes,
/// decoded (if at all) by the caller once the record is whole. (Named apart from CSV.swift's
/// `CSVReader`: that module also declares a type `CSV`, so `CSV.CSVReader` cannot disambiguate.)
///
/// - A UTF-8 byte order mark at the very start is skipped.
/// - Records end at CRLF, LF or a lone CR outside quotes; a blank line is no record; the last
///   record may lack a line end (`finish` delivers it).
/// - Quoted fields may hold separators, line ends and `""` (one quote).
/// - A field longer than `maxFieldBytes`, a record with more than `maxFields` fields, a quote
///   inside an unquoted field, text after a closing quote, or a quote still open at the end of
///   the input make the record malformed: it is reported once, and the reader skips to the next
///   record end outside quotes. Memory stays within one record of `maxFields` × `maxFieldBytes`
///   (the buffers keep the largest record's capacity until `finish`).
///
/// Not thread-safe (a value confined to whoever feeds it). The callback cannot throw, which
/// keeps the reader free of generics (it runs unspecialised in other modules); a caller that
/// must stop notes why and ignores the events that follow.
public struct CSVPushReader {
    public let maxFieldBytes: Int
    public let maxFields: Int

    private enum State {
        /// Nothing of the current field read yet.
        case fieldStart
        case unquoted
        case quoted
        /// A quote inside a quoted field: either the first of `""` or the closing one.
        case quoteInQuoted
    }

    private var state = State.fieldStart
    /// Bytes of the byte order mark matched so far while still at the start of the input.
    private var byteOrderMarkMatched = 0
    private var atInputStart = true
    /// Physical line (1-based) the next byte is on; line ends inside quoted fields count too.
    private var line = 1
    private var recordLine = 1
    private var recordStarted = false
    /// The current record was reported malformed: read on to its end without keeping anything.
    private var discarding = false
    private var lastByteWasCR = false
    /// The current record's fields back to back, and where each finished field ends.
    private var fieldBytes: [UInt8] = []
    private var fieldEnds: [Int] = []

    public init(maxFieldBytes: Int = 65_536, maxFields: Int = 256) {
        self.maxFieldBytes = maxFieldBytes
        self.maxFields = maxFields
    }

    /// Reads `input` and calls `handle` for every record (or malformed record) that ends in it.
    public mutating func feed(_ input: UnsafeRawBufferPointer, _ handle: (CSVEvent) -> Void) {
        var rest = input[...]
        while atInputStart, let byte = rest.first {
            guard byte == Self.byteOrderMark[byteOrderMarkMatched] else {
                endInputStart(handle)
                break
            }
            byteOrderMarkMatched += 1
            rest = rest.dropFirst()
            if byteOrderMarkMatched == Self.byteOrderMark.count { atInputStart = false }
        }
        consume(UnsafeRawBufferPointer(rebasing: rest), handle)
    }

    /// Ends the input: delivers a last record that had no line end (or reports a quote left
    /// open), then resets the reader for a new input.
    public mutating func finish(_ handle: (CSVEvent) -> Void) {
        if atInputStart { endInputStart(handle) }
        if recordStarted {
            if state == .quoted {
                if !discarding { handle(.malformed(line: recordLine, .unterminatedQuotedField)) }
            } else {
                endRecord(handle)
            }
        }
        self = CSVPushReader(maxFieldBytes: maxFieldBytes, maxFields: maxFields)
    }

    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// The input does not start with a whole byte order mark: the part of it matched so far is data.
    private mutating func endInputStart(_ handle: (CSVEvent) -> Void) {
        atInputStart = false
        let matched = byteOrderMarkMatched
        guard matched > 0 else { return }
        Self.byteOrderMark[..<matched].withUnsafeBufferPointer { prefix in
            consume(UnsafeRawBufferPointer(prefix), handle)
        }
    }

    private mutating func consume(_ input: UnsafeRawBufferPointer, _ handle: (CSVEvent) -> Void) {
        var index = 0
        let end = input.count
        while index < end {
            switch state {
            case .fieldStart:
                let byte = input[index]
                switch byte {
                case ASCII.quote:
                    startRecord()
                    state = .quoted
                    lastByteWasCR = false
                    index += 1
                case ASCII.comma:
                    startRecord()
                    lastByteWasCR = false
                    index += 1
                    endField(handle)
                case ASCII.cr, ASCII.lf:
                    index += 1
                    endLine(byte, handle)
                default:
                    startRecord()
                    state = .unquoted
                }

            case .unquoted:
                guard let byte = takeRun(input, &index, until: ASCII.endsUnquotedRun, handle) else { break }
                switch byte {
                case ASCII.comma:
                    endField(handle)
                case ASCII.quote:
                    lastByteWasCR = false
                    // While discarding, a stray quote is just skipped like any other byte.
                    if !discarding { reportMalformed(.quoteInUnquotedField, handle) }
                default:
                    endLine(byte, handle)
                }

            case .quoted:
                guard let byte = takeRun(input, &index, until: ASCII.endsQuotedRun, handle) else { break }
                if byte == ASCII.quote {
                    lastByteWasCR = false
                    state = .quoteInQuoted
                } else {
                    // A line end inside quotes is data, but it still starts a new physical line.
                    countLineEnd(byte)
                    append(UnsafeRawBufferPointer(rebasing: input[(index - 1)..<index]), handle)
                }

            case .quoteInQuoted:
                let byte = input[index]
                switch byte {
                case ASCII.quote:
                    index += 1
                    state = .quoted
                    append(UnsafeRawBufferPointer(rebasing: input[(index - 1)..<index]), handle)
                case ASCII.comma:
                    index += 1
                    endField(handle)
                case ASCII.cr, ASCII.lf:
                    index += 1
                    endLine(byte, handle)
                default:
                    // Text after a closing quote; the rest of the field is read as unquoted.
                    state = .unquoted
                    if !discarding { reportMalformed(.textAfterClosingQuote, handle) }
                }
            }
        }
    }

    private mutating func startRecord() {
        guard !recordStarted else { return }
        recordStarted = true
        recordLine = line
    }

    /// Appends the run of field bytes from `index` up to the first byte `stop` matches, then takes
    /// that byte and returns it; nil when the chunk ends first (the field goes on in the next one).
    @inline(__always)
    private mutating func takeRun(_ input: UnsafeRawBufferPointer, _ index: inout Int, until stop: (UInt8) -> Bool,
                                  _ handle: (CSVEvent) -> Void) -> UInt8? {
        let runStart = index
        while index < input.count, !stop(input[index]) { index += 1 }
        if index > runStart {
            lastByteWasCR = false
            append(UnsafeRawBufferPointer(rebasing: input[runStart..<index]), handle)
        }
        guard index < input.count else { return nil }
        defer { index += 1 }
        return input[index]
    }

    private mutating func countLineEnd(_ byte: UInt8) {
        // CRLF is one line end: the LF after a CR was counted with the CR.
        if byte == ASCII.cr || !lastByteWasCR { line += 1 }
        lastByteWasCR = byte == ASCII.cr
    }

    /// A CR or LF outside quotes.
    private mutating func endLine(_ byte: UInt8, _ handle: (CSVEvent) -> Void) {
        let secondHalfOfCRLF = byte == ASCII.lf && lastByteWasCR
        countLineEnd(byte)
        if secondHalfOfCRLF { return }
        state = .fieldStart
        if recordStarted { endRecord(handle) }
    }

    private mutating func append(_ run: UnsafeRawBufferPointer, _ handle: (CSVEvent) -> Void) {
        if discarding { return }
        let fieldLength = fieldBytes.count - (fieldEnds.last ?? 0)
        guard run.count <= maxFieldBytes - fieldLength else {
            reportMalformed(.fieldTooLong(limit: maxFieldBytes), handle)
            return
        }
        fieldBytes.append(contentsOf: run)
    }

    /// A separator outside quotes.
    private mutating func endField(_ handle: (CSVEvent) -> Void) {
        state = .fieldStart
        if discarding { return }
        fieldEnds.append(fieldBytes.count)
        // A separator always opens one more field.
        if fieldEnds.count >= maxFields { reportMalformed(.tooManyFields(limit: maxFields), handle) }
    }

    private mutating func endRecord(_ handle: (CSVEvent) -> Void) {
        if !discarding {
            fieldEnds.append(fieldBytes.count)
            let line = recordLine
            fieldBytes.withUnsafeBufferPointer { bytes in
                fieldEnds.withUnsafeBufferPointer { ends in
                    handle(.record(CSVRecord(line: line, bytes: bytes, ends: ends)))
                }
            }
        }
        clearRecord()
    }

    private mutating func reportMalformed(_ problem: CSVMalformation, _ handle: (CSVEvent) -> Void) {
        discarding = true
        fieldBytes.removeAll(keepingCapacity: true)
        fieldEnds.removeAll(keepingCapacity: true)
        handle(.malformed(line: recordLine, problem))
    }

    private mutating func clearRecord() {
        fieldBytes.removeAll(keepingCapacity: true)
        fieldEnds.removeAll(keepingCapacity: true)
        recordStarted = false
        discarding = false
    }
}

/// What the reader reports.
public enum CSVEvent {
    /// A whole record; its fields are valid only during the callback.
    case record(CSVRecord)
    /// A record that broke a rule or a limit; `line` is where it started. Nothing of it is kept.
    case malformed(line: Int, CSVMalformation)
}

public enum CSVMalformation: Equatable, Sendable, CustomStringConvertible {
    case fieldTooLong(limit: Int)
    case tooManyFields(limit: Int)
    case quoteInUnquotedField
    case textAfterClosingQuote
    case unterminatedQuotedField

    public var description: String {
        switch self {
        case .fieldTooLong(let limit): "a field is longer than \(limit) bytes"
        case .tooManyFields(let limit): "more than \(limit) fields"
        case .quoteInUnquotedField: "a quote inside an unquoted field"
        case .textAfterClosingQuote: "text after a closing quote"
        case .unterminatedQuotedField: "a quoted field is not closed before the end of the input"
        }
    }
}

/// One record's fields as raw bytes (quotes removed, `""` unescaped). It borrows the reader's
/// buffer: valid only during the callback that receives it; copy what must outlive it.
public struct CSVRecord: RandomAccessCollection {
    /// The line the record starts on (1-based).
    public let line: Int
    private let bytes: UnsafeBufferPointer<UInt8>
    private let ends: UnsafeBufferPointer<Int>

    init(line: Int, bytes: UnsafeBufferPointer<UInt8>, ends: UnsafeBufferPointer<Int>) {
        self.line = line
        self.bytes = bytes
        self.ends = ends
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { ends.count }

    public subscript(index: Int) -> Slice<UnsafeBufferPointer<UInt8>> {
        bytes[(index == 0 ? 0 : ends[index - 1])..<ends[index]]
    }
}

extension ASCII {
    @inline(__always)
    static func endsUnquotedRun(_ byte: UInt8) -> Bool {
        byte == comma || byte == quote || byte == cr || byte == lf
    }

    @inline(__always)
    static func endsQuotedRun(_ byte: UInt8) -> Bool {
        byte == quote || byte == cr || byte == lf
    }
}
