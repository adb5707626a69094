import Testing
@testable import ExpiryCore

@Suite struct CacheKeyTests {
    @Test func plainKeys() {
        #expect(CacheKey.entry(campaign: "camp_1", member: "CARD-1") == "pe:{camp_1|CARD-1}:entry")
        #expect(CacheKey.generation(campaign: "camp_1", member: "CARD-1") == "pe:{camp_1|CARD-1}:gen")
        #expect(CacheKey.entry(campaign: "Loyalty Campaign", member: "zażółć") == "pe:{Loyalty Campaign|zażółć}:entry")
    }

    @Test func escapesTagAndSeparatorCharacters() {
        #expect(CacheKey.entry(campaign: "a|b", member: "c") == "pe:{a%7Cb|c}:entry")
        #expect(CacheKey.entry(campaign: "a", member: "b|c") == "pe:{a|b%7Cc}:entry")
        #expect(CacheKey.entry(campaign: "{x}", member: "}") == "pe:{%7Bx%7D|%7D}:entry")
        #expect(CacheKey.generation(campaign: "100%", member: "%7C") == "pe:{100%25|%257C}:gen")
    }

    @Test func distinctPairsNeverCollide() {
        let pairs = [("a|b", "c"), ("a", "b|c"), ("a%7Cb", "c"), ("a", "b%7Cc"), ("", "a|"), ("|a", "")]
        let keys = Set(pairs.map { CacheKey.entry(campaign: $0.0, member: $0.1) })
        #expect(keys.count == pairs.count)
    }

    @Test func entryAndGenerationShareTheHashTag() {
        for (c, m) in [("camp_1", "CARD-1"), ("{a}", "b}c"), ("x|y", "%")] {
            let tag = { (key: String) -> Substring in
                let open = key.firstIndex(of: "{")!
                let close = key[open...].firstIndex(of: "}")!
                return key[key.index(after: open)..<close]
            }
            #expect(tag(CacheKey.entry(campaign: c, member: m)) == tag(CacheKey.generation(campaign: c, member: m)))
            #expect(tag(CacheKey.entry(campaign: c, member: m)).count > 1)
        }
    }
}
