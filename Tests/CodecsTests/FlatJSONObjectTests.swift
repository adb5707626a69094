import Testing
@testable import Codecs

@Suite struct FlatJSONObjectTests {
    static let keys: [StaticString] = ["a", "bb"]

    /// The members the scan reported, as (key index, value text or nil for null); nil when it refused the document.
    func scan(_ json: String) -> [(Int, String?)]? {
        let bytes = Array(json.utf8)
        var members: [(Int, String?)] = []
        let flat = bytes.withUnsafeBytes { raw in
            FlatJSONObject.scan(raw, keys: Self.keys) { key, value in
                members.append((key, value.map { String(decoding: raw[$0], as: UTF8.self) }))
            }
        }
        return flat ? members : nil
    }

    @Test func reportsEveryMemberInDocumentOrder() throws {
        let members = try #require(scan(#" { "bb" : "x y" , "a":null,"a":"" } "#))
        #expect(members.map(\.0) == [1, 0, 0])
        #expect(members.map(\.1) == ["x y", nil, ""])
        #expect(scan("{}")?.isEmpty == true)
    }

    /// Anything beyond plain strings and null under the listed keys is left to the full parser.
    @Test(arguments: [
        "", "[]", "{", #"{"a":"x""#, #"{"a":"x"} x"#, #"{"a":"x",}"#, #"{,}"#, #"{"a" "x"}"#, #"{"a":"x" "bb":"y"}"#,
        #"{"c":"x"}"#, #"{"A":"x"}"#, #"{"a":1}"#, #"{"a":true}"#, #"{"a":["x"]}"#, #"{"a":{}}"#, #"{"a":nul}"#, #"{"a":nullx}"#,
        #"{"a":"\n"}"#, #"{"a":"é"}"#, "{\"a\":\"x\u{01}\"}", #"{"\u0061":"x"}"#,
    ])
    func refusesOtherShapes(_ json: String) {
        #expect(scan(json) == nil)
    }
}
