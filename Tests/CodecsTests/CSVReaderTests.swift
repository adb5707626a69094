import Testing
@testable import Codecs

/// What a reader reported, copied out of the callback.
private enum Event: Equatable, CustomStringConvertible {
    case record(line: Int, [String])
    case malformed(line: Int, CSVMalformation)

    var description: String {
        switch self {
        case .record(let line, let fields): "record(\(line), \(fields))"
        case .malformed(let line, let problem): "malformed(\(line), \(problem))"
        }
    }
}

private func copied(_ event: CSVEvent) -> Event {
    switch event {
    case .record(let record): .record(line: record.line, record.map { String(decoding: $0, as: UTF8.self) })
    case .malformed(let line, let problem): .malformed(line: line, problem)
    }
}

/// Feeds `chunks` in order, then finishes; returns every event.
private func read(_ chunks: [[UInt8]], _ reader: CSVPushReader = CSVPushReader()) -> [Event] {
    var reader = reader
    var events: [Event] = []
    for chunk in chunks {
        chunk.withUnsafeBytes { reader.feed($0) { events.append(copied($0)) } }
    }
    reader.finish { events.append(copied($0)) }
    return events
}

private func read(_ text: String, _ reader: CSVPushReader = CSVPushReader()) -> [Event] {
    read([Array(text.utf8)], reader)
}

private let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

@Suite struct CSVPushReaderTests {
    @Test func recordsEndAtCRLFOrLFOrALoneCR() {
        #expect(read("a,b\r\nc,d\ne,f\rg,h\n") == [
            .record(line: 1, ["a", "b"]),
            .record(line: 2, ["c", "d"]),
            .record(line: 3, ["e", "f"]),
            .record(line: 4, ["g", "h"]),
        ])
    }

    @Test func lastRecordWithoutLineEndComesFromFinish() {
        var reader = CSVPushReader()
        var events: [Event] = []
        Array("a,b\nc,d".utf8).withUnsafeBytes { reader.feed($0) { events.append(copied($0)) } }
        #expect(events == [.record(line: 1, ["a", "b"])])
        reader.finish { events.append(copied($0)) }
        #expect(events == [.record(line: 1, ["a", "b"]), .record(line: 2, ["c", "d"])])
    }

    @Test func blankLinesAreNoRecordsButCountAsLines() {
        #expect(read("\n\r\n\ra\n\n\r\nb\r\n\r\n") == [
            .record(line: 4, ["a"]),
            .record(line: 7, ["b"]),
        ])
        #expect(read("") == [])
        #expect(read("\r\n") == [])
    }

    @Test func emptyFieldsAreFields() {
        #expect(read("a,,b\n,\n\"\"\nx,\n") == [
            .record(line: 1, ["a", "", "b"]),
            .record(line: 2, ["", ""]),
            .record(line: 3, [""]),
            .record(line: 4, ["x", ""]),
        ])
        #expect(read("a,") == [.record(line: 1, ["a", ""])])
    }

    @Test func quotedFieldsHoldSeparatorsLineEndsAndEscapedQuotes() {
        let input = "\"a,b\",\"say \"\"hi\"\"\",\"two\r\nlines\",\"cr\ronly\"\nnext,\"\"\"\"\n"
        #expect(read(input) == [
            .record(line: 1, ["a,b", "say \"hi\"", "two\r\nlines", "cr\ronly"]),
            .record(line: 4, ["next", "\""]),
        ])
    }

    @Test func spacesAndMultiByteCharactersAreKept() {
        #expect(read(" a , b \nzażółć,😀\n") == [
            .record(line: 1, [" a ", " b "]),
            .record(line: 2, ["zażółć", "😀"]),
        ])
        // A quote after a space is inside an unquoted field (RFC 4180 has no padding around quotes).
        #expect(read("a, \"b\"\n") == [.malformed(line: 1, .quoteInUnquotedField)])
    }

    @Test func byteOrderMarkIsSkippedOnlyAtTheVeryStart() {
        #expect(read([byteOrderMark + Array("a,b\n".utf8)]) == [.record(line: 1, ["a", "b"])])
        // A mark anywhere else is data.
        #expect(read([Array("a\n".utf8) + byteOrderMark + Array("b\n".utf8)]) == [
            .record(line: 1, ["a"]),
            .record(line: 2, ["\u{FEFF}b"]),
        ])
        // Split over chunks, one byte each.
        #expect(read(byteOrderMark.map { [$0] } + [Array("x\n".utf8)]) == [.record(line: 1, ["x"])])
        #expect(read([byteOrderMark]) == [])
    }

    @Test func aPartialByteOrderMarkIsData() {
        let bytes: [UInt8] = [0xEF, 0xBB, UInt8(ascii: "x"), UInt8(ascii: "\n")]
        let expected = [Event.record(line: 1, [String(decoding: bytes.dropLast(), as: UTF8.self)])]
        #expect(read([bytes]) == expected)
        #expect(read(bytes.map { [$0] }) == expected)
        // Cut short by the end of the input.
        #expect(read([[0xEF, 0xBB]]) == [.record(line: 1, [String(decoding: [0xEF, 0xBB] as [UInt8], as: UTF8.self)])])
    }

    @Test func fieldsAtTheLengthLimitPassAndLongerOnesMakeTheRecordMalformed() {
        let reader = CSVPushReader(maxFieldBytes: 4)
        #expect(read("abcd,\"ab\"\"c\"\nabcde,x\n\"abc\r\n\"\"d\",y\nok\n", reader) == [
            .record(line: 1, ["abcd", "ab\"c"]),
            .malformed(line: 2, .fieldTooLong(limit: 4)),
            // The quoted field with a line end in it is skipped whole.
            .malformed(line: 3, .fieldTooLong(limit: 4)),
            .record(line: 5, ["ok"]),
        ])
    }

    @Test func recordsAtTheFieldLimitPassAndWiderOnesAreMalformed() {
        let reader = CSVPushReader(maxFields: 3)
        #expect(read("a,b,c\na,b,c,d\n,,\n,,,\nend\n", reader) == [
            .record(line: 1, ["a", "b", "c"]),
            .malformed(line: 2, .tooManyFields(limit: 3)),
            .record(line: 3, ["", "", ""]),
            .malformed(line: 4, .tooManyFields(limit: 3)),
            .record(line: 5, ["end"]),
        ])
    }

    @Test func aQuoteInsideAnUnquotedFieldIsMalformed() {
        #expect(read("ab\"c,d\"e\"f\nnext\n") == [
            .malformed(line: 1, .quoteInUnquotedField),
            .record(line: 2, ["next"]),
        ])
    }

    @Test func textAfterAClosingQuoteIsMalformed() {
        #expect(read("\"a\"b,c\n\"x\" ,y\nnext\n") == [
            .malformed(line: 1, .textAfterClosingQuote),
            .malformed(line: 2, .textAfterClosingQuote),
            .record(line: 3, ["next"]),
        ])
    }

    @Test func resynchronisationHonoursQuotesOpenedAfterTheError() {
        // The line end inside the later quoted field does not end the malformed record.
        #expect(read("a\"b,\"x\ny\",c\nnext\n") == [
            .malformed(line: 1, .quoteInUnquotedField),
            .record(line: 3, ["next"]),
        ])
    }

    @Test func aQuoteLeftOpenAtTheEndIsMalformed() {
        #expect(read("a,b\n\"open,\nstill open") == [
            .record(line: 1, ["a", "b"]),
            .malformed(line: 2, .unterminatedQuotedField),
        ])
        // Reported once: a record already malformed is not reported again at the end.
        #expect(read("a\"b,\"open", CSVPushReader()) == [.malformed(line: 1, .quoteInUnquotedField)])
    }

    @Test func finishStartsANewInput() {
        var reader = CSVPushReader()
        var events: [Event] = []
        for input in [byteOrderMark + Array("a\n\"b".utf8), byteOrderMark + Array("c\n".utf8)] {
            input.withUnsafeBytes { reader.feed($0) { events.append(copied($0)) } }
            reader.finish { events.append(copied($0)) }
        }
        #expect(events == [
            .record(line: 1, ["a"]),
            .malformed(line: 2, .unterminatedQuotedField),
            .record(line: 1, ["c"]),
        ])
    }

    /// Every way of cutting a tricky input gives the same events as reading it whole.
    @Test func chunkBoundariesDoNotMatter() {
        let input = byteOrderMark + Array(
            "id,\"name, full\",note\r\n1,\"say \"\"hi\"\"\r\nthere\",ünïcødé 😀\r\n\r\n2,,\"\"\r3,x\"y,z\n\"4\"!,a,b\n5,\"tail\"".utf8)
        let whole = read([input])
        #expect(whole == [
            .record(line: 1, ["id", "name, full", "note"]),
            .record(line: 2, ["1", "say \"hi\"\r\nthere", "ünïcødé 😀"]),
            .record(line: 5, ["2", "", ""]),
            .malformed(line: 6, .quoteInUnquotedField),
            .malformed(line: 7, .textAfterClosingQuote),
            .record(line: 8, ["5", "tail"]),
        ])
        #expect(read(input.map { [$0] }) == whole)
        for cut in 0...input.count {
            #expect(read([Array(input[..<cut]), Array(input[cut...])]) == whole, "cut at byte \(cut)")
        }
        for first in stride(from: 0, through: input.count, by: 3) {
            for second in stride(from: first, through: input.count, by: 5) {
                let chunks = [Array(input[..<first]), Array(input[first..<second]), Array(input[second...])]
                #expect(read(chunks) == whole, "cuts at bytes \(first) and \(second)")
            }
        }
    }
}
