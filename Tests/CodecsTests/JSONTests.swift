import Testing
import TestSupport
@testable import Codecs

@Suite struct JSONParserTests {
    @Test func parsesScalars() throws {
        #expect(try parseJSON("null") == .null)
        #expect(try parseJSON("true") == .bool(true))
        #expect(try parseJSON(" false ") == .bool(false))
        #expect(try parseJSON("\"hi\"") == .string("hi"))
        #expect(try parseJSON("0") == .number("0"))
    }

    @Test(arguments: ["0", "-0", "12", "-12", "1.5", "1e10", "1E+2", "-3.25e-7", "9223372036854775808", "123456789012345678901234567890"])
    func keepsNumberLiteralText(_ literal: String) throws {
        #expect(try parseJSON(literal) == .number(literal))
    }

    @Test(arguments: ["01", "-", "+1", "1.", ".5", "1e", "1e+", "0x10", "NaN", "Infinity", "-01", "1.e5"])
    func rejectsInvalidNumbers(_ literal: String) {
        #expect(syntaxError(literal) != nil)
    }

    @Test func parsesNestedStructures() throws {
        let value = try parseJSON(#" { "a" : [1, {"b": null}, "x"], "c": {} , "d": [] } "#)
        let object = try #require(value.objectValue)
        #expect(object.members.map(\.key) == ["a", "c", "d"])
        #expect(object["a"] == .array([.number("1"), .object(JSONObject(members: [("b", .null)])), .string("x")]))
        #expect(object["c"] == .object(JSONObject()))
        #expect(object["d"] == .array([]))
        #expect(object["missing"] == nil)
    }

    @Test func duplicateKeysAreKeptAndLookupTakesTheLast() throws {
        let object = try #require(try parseJSON(#"{"k":1,"other":true,"k":2}"#).objectValue)
        #expect(object.members.count == 3)
        #expect(object.members[0].value == .number("1"))
        #expect(object["k"] == .number("2"))
    }

    @Test func decodesEscapes() throws {
        #expect(try parseJSON(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{c}\n\r\t"))
        #expect(try parseJSON(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try parseJSON(#""before \u0000 after""#) == .string("before \u{0} after"))
    }

    @Test func decodesSurrogatePairs() throws {
        #expect(try parseJSON(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try parseJSON(#""x\uD834\uDD1Ey""#) == .string("x𝄞y"))
    }

    @Test(arguments: [#""\ud83d""#, #""\ud83dx""#, #""\ude00""#, #""\ud83d\u0041""#, #""\ud83d\n""#])
    func rejectsLoneSurrogates(_ document: String) throws {
        let error = try #require(syntaxError(document))
        #expect(error.reason.contains("surrogate"))
    }

    @Test func acceptsRawUTF8() throws {
        #expect(try parseJSON("\"zażółć 😀\"") == .string("zażółć 😀"))
        #expect(try parseJSON("{\"ключ\":\"значение\"}").objectValue?["ключ"] == .string("значение"))
    }

    @Test(arguments: [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xC0, 0xAF, 0x22],
                      [0x22, 0x5C, 0x6E, 0xFE, 0x22]] as [[UInt8]])
    func rejectsInvalidUTF8InStrings(_ bytes: [UInt8]) throws {
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(bytes) }
    }

    @Test(arguments: ["\"a\u{1}b\"", "\"tab\there\"", "\"line\nbreak\""])
    func rejectsUnescapedControlCharacters(_ document: String) {
        #expect(syntaxError(document) != nil)
    }

    @Test(arguments: [#""\x41""#, #""\u12""#, #""\u12G4""#, #""abc"#, #""\"#])
    func rejectsBadEscapesAndUnterminatedStrings(_ document: String) {
        #expect(syntaxError(document) != nil)
    }

    @Test func rejectsTrailingGarbage() throws {
        let error = try #require(syntaxError(#"{"a":1} x"#))
        #expect(error.offset == 8)
        #expect(syntaxError("1 2") != nil)
        #expect(syntaxError("{}{}") != nil)
        #expect(syntaxError("[1]]") != nil)
    }

    @Test(arguments: ["", "   ", "{", "[", "[1,]", "{\"a\":1,}", "{\"a\"}", "{a:1}", "{'a':1}", "[1 2]", "tru", "nul", "truex",
                      "\u{FEFF}{}", "{\"a\":1 \"b\":2}", "[,1]"])
    func rejectsMalformedDocuments(_ document: String) {
        #expect(syntaxError(document) != nil)
    }

    @Test func reportsTheOffsetOfTheProblem() throws {
        let error = try #require(syntaxError(#"{"a": tru}"#))
        #expect(error.offset == 6)
        #expect(!error.reason.isEmpty)
    }

    @Test func enforcesTheDepthLimit() throws {
        let nested = { (n: Int) in String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        #expect(try parseJSON(nested(64)) != .null)
        let error = try #require(syntaxError(nested(65)))
        #expect(error.reason.contains("64"))
        #expect(syntaxError(#"{"a":{"b":{}}}"#, maxDepth: 2) != nil)
        #expect(syntaxError(#"{"a":{"b":1}}"#, maxDepth: 2) == nil)
        // Deep input must fail cleanly, not overflow the stack.
        #expect(syntaxError(String(repeating: "[", count: 100_000)) != nil)
    }

    @Test func parsesFromARawBuffer() throws {
        let bytes = Array(#"{"x":[true]}"#.utf8)
        let value = try bytes.withUnsafeBytes { try JSONParser.parse($0) }
        #expect(value.objectValue?["x"] == .array([.bool(true)]))
    }

    @Test func int64ValueAcceptsNumbersAndStrings() throws {
        #expect(JSONValue.number("42").int64Value == 42)
        #expect(JSONValue.string("-9223372036854775808").int64Value == Int64.min)
        #expect(JSONValue.string("9223372036854775807").int64Value == Int64.max)
        #expect(JSONValue.string("9223372036854775808").int64Value == nil)
        #expect(JSONValue.number("1.5").int64Value == nil)
        #expect(JSONValue.number("1e3").int64Value == nil)
        #expect(JSONValue.string("").int64Value == nil)
        #expect(JSONValue.string("+1").int64Value == nil)
        #expect(JSONValue.string(" 1").int64Value == nil)
        #expect(JSONValue.bool(true).int64Value == nil)
    }
}

@Suite struct JSONWriterTests {
    func written(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        body(&writer)
        return text(writer.bytes)
    }

    @Test func escapesLikeJSONStringify() {
        #expect(written { $0.appendString("a\"b\\c") } == #""a\"b\\c""#)
        #expect(written { $0.appendString("\n\r\t\u{8}\u{c}") } == #""\n\r\t\b\f""#)
        #expect(written { $0.appendString("\u{0}\u{1}\u{1f}") } == #""\u0000\u0001\u001f""#)
        #expect(written { $0.appendString("/ é 😀 \u{7f}") } == "\"/ é 😀 \u{7f}\"")
        #expect(written { $0.appendString("") } == #""""#)
    }

    @Test(arguments: ["", "plain", "quote\" back\\slash", "ctl \u{0}\u{1}\u{1f}\n", "zażółć 😀 𝄞", String(repeating: "x\"", count: 100)])
    func stringsRoundTripThroughTheParser(_ original: String) throws {
        var writer = JSONWriter()
        writer.appendString(original)
        #expect(try JSONParser.parse(writer.bytes) == .string(original))
    }

    @Test func writesIntegers() {
        #expect(written { $0.appendNumber(0) } == "0")
        #expect(written { $0.appendNumber(-17) } == "-17")
        #expect(written { $0.appendNumber(Int64.max) } == "9223372036854775807")
        #expect(written { $0.appendNumber(Int64.min) } == "-9223372036854775808")
        #expect(written { $0.appendInt64String(1234567890123) } == #""1234567890123""#)
    }
}

@Suite struct JSONValueWritingTests {
    /// Keys out of alphabetical order, a duplicate key, every kind of value, nesting, empty
    /// containers and strings holding whitespace and escapes.
    static let sample: JSONValue = .object([
        "zeta": .string("two  spaces\n\t and \"quotes\""),
        "alpha": .array([.integer(1), .number("-2.5e3"), .bool(true), .bool(false), .null]),
        "empty_object": .object([:]),
        "empty_array": .array([]),
        "nested": .object(["inner": .array([.object(["k": .string("v")])]), "big": .integer(Int64.min)]),
        "zeta": .string("again"),
    ])

    func compact(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.appendValue(value)
        return writer.bytes
    }

    func pretty(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.appendPrettyValue(value)
        return writer.bytes
    }

    @Test func writesCompactly() {
        #expect(text(compact(Self.sample)) == #"{"zeta":"two  spaces\n\t and \"quotes\"","alpha":[1,-2.5e3,true,false,null],"#
            + #""empty_object":{},"empty_array":[],"nested":{"inner":[{"k":"v"}],"big":-9223372036854775808},"zeta":"again"}"#)
        #expect(text(compact(.string("x"))) == #""x""#)
        #expect(text(compact(.integer(UInt64.max))) == "18446744073709551615")
    }

    @Test func writesPrettilyWithTwoSpaceIndentation() {
        let value: JSONValue = .object(["a": .array([.integer(1), .object([:])]), "b": .object(["c": .null]), "d": .array([])])
        #expect(text(pretty(value)) == """
            {
              "a": [
                1,
                {}
              ],
              "b": {
                "c": null
              },
              "d": []
            }
            """)
        #expect(text(pretty(.bool(true))) == "true")
    }

    @Test func bothFormsRoundTripThroughTheParserKeepingMemberOrder() throws {
        #expect(try JSONParser.parse(compact(Self.sample)) == Self.sample)
        #expect(try JSONParser.parse(pretty(Self.sample)) == Self.sample)
        let keys = try #require(try JSONParser.parse(pretty(Self.sample)).objectValue).members.map(\.key)
        #expect(keys == ["zeta", "alpha", "empty_object", "empty_array", "nested", "zeta"])
    }

    /// Signatures cover the compact form, so the pretty one may only add whitespace outside strings.
    @Test func prettyIsCompactPlusWhitespaceOutsideStrings() {
        let compactBytes = compact(Self.sample)
        var matched = 0
        var added: [UInt8] = []
        for byte in pretty(Self.sample) {
            // Compact output has no whitespace where pretty inserts it, so matching greedily is exact.
            if matched < compactBytes.count, byte == compactBytes[matched] {
                matched += 1
            } else {
                added.append(byte)
            }
        }
        #expect(matched == compactBytes.count)
        #expect(!added.isEmpty)
        #expect(added.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") })
    }
}

@Suite struct HexTests {
    @Test func hexRoundTrip() {
        #expect(Hex.lowercase([0x00, 0xAB, 0xFF]) == "00abff")
        #expect(Hex.decode("00ABff") == [0x00, 0xAB, 0xFF])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}

/// The syntax error a document produces, or nil when it parses.
func syntaxError(_ text: String, maxDepth: Int = 64) -> JSONSyntaxError? {
    do {
        _ = try parseJSON(text, maxDepth: maxDepth)
        return nil
    } catch let error as JSONSyntaxError {
        return error
    } catch {
        Issue.record("unexpected error type \(error)")
        return nil
    }
}

@Suite struct PercentEncodingTests {
    @Test func pathSegments() {
        #expect(PercentEncoding.pathSegment("Loyalty Campaign") == "Loyalty%20Campaign")
        #expect(PercentEncoding.pathSegment("a/b") == "a%2Fb")
        #expect(PercentEncoding.pathSegment("camp_1-A.b~") == "camp_1-A.b~")
        #expect(PercentEncoding.pathSegment("zł") == "z%C5%82")
        #expect(PercentEncoding.pathSegment("😀") == "%F0%9F%98%80")
        #expect(PercentEncoding.pathSegment("100%?#&+=") == "100%25%3F%23%26%2B%3D")
        #expect(PercentEncoding.pathSegment("..") == "..")
        #expect(PercentEncoding.pathSegment("") == "")
    }

    @Test func decodesPathSegmentsKeepingPlus() {
        #expect(PercentEncoding.decodePathSegment("a+b%20c%2Fd".utf8) == Array("a+b c/d".utf8))
        #expect(PercentEncoding.decodeQueryComponent("a+b%20c%2Fd".utf8) == Array("a b c/d".utf8))
        #expect(PercentEncoding.decodePathSegment("z%C5%82".utf8) == Array("zł".utf8))
        #expect(PercentEncoding.decodePathSegment("".utf8) == [])
        for malformed in ["%", "%4", "%G1", "ab%2"] {
            #expect(PercentEncoding.decodePathSegment(malformed.utf8) == nil)
            #expect(PercentEncoding.decodeQueryComponent(malformed.utf8) == nil)
        }
        for original in ["Loyalty Campaign", "a+b", "100%", "zażółć 😀"] {
            #expect(PercentEncoding.decodePathSegment(PercentEncoding.pathSegment(original).utf8) == Array(original.utf8))
        }
    }

    @Test func pathSegmentsRoundTripThroughDecoding() {
        for original in ["Loyalty Campaign", "a/b?c", "zażółć 😀", "%41+"] {
            let encoded = PercentEncoding.pathSegment(original)
            #expect(PercentEncoding.decodeQueryComponent(encoded.utf8) == Array(original.utf8))
        }
    }
}
