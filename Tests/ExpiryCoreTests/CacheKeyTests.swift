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

    /// What Redis Cluster hashes: the text between the first `{` and the next `}`.
    func hashTag(_ key: String) throws -> Substring {
        let open = try #require(key.firstIndex(of: "{"))
        let close = try #require(key[open...].firstIndex(of: "}"))
        return key[key.index(after: open)..<close]
    }

    @Test(arguments: [("camp_1", "CARD-1"), ("{a}", "b}c"), ("x|y", "%")])
    func entryAndGenerationShareTheWholeHashTag(_ campaign: String, _ member: String) throws {
        let entry = CacheKey.entry(campaign: campaign, member: member)
        let generation = CacheKey.generation(campaign: campaign, member: member)
        let handled = CacheKey.handledEvent(campaign: campaign, member: member, eventID: "evt_{1}")
        #expect(try hashTag(entry) == hashTag(generation))
        #expect(try hashTag(entry) == hashTag(handled))
        // The tag spans both escaped parts, up to the key's suffix.
        #expect(entry.hasSuffix("\(try hashTag(entry))}:entry"))
    }

    @Test func handledEventAndCampaignSpellingKeys() {
        #expect(CacheKey.handledEvent(campaign: "camp_1", member: "CARD-1", eventID: "evt_9") == "pe:{camp_1|CARD-1}:event:evt_9")
        #expect(CacheKey.campaignSpellings("Loyalty {Club}") == "pe:campaign:{Loyalty %7BClub%7D}:aka")
    }
}
