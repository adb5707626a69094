import Testing
@testable import PointsExpiryServer

@Suite struct CacheKeyTests {
    @Test func plainKeys() {
        #expect(CacheKey.answers(member: "CARD-1") == "pe:{CARD-1}:answers")
        #expect(CacheKey.generation(member: "CARD-1") == "pe:{CARD-1}:gen")
        #expect(CacheKey.handledEvent(member: "CARD-1", eventID: "evt_9") == "pe:{CARD-1}:event:evt_9")
        #expect(CacheKey.answers(member: "zażółć") == "pe:{zażółć}:answers")
    }

    @Test func escapesTagCharacters() {
        #expect(CacheKey.answers(member: "{x}") == "pe:{%7Bx%7D}:answers")
        #expect(CacheKey.generation(member: "100%") == "pe:{100%25}:gen")
        #expect(CacheKey.answers(member: "a|b") == "pe:{a|b}:answers")
    }

    @Test func distinctMembersNeverCollide() {
        let members = ["a}", "a%7D", "{a", "%7Ba", "a", "a%"]
        #expect(Set(members.map { CacheKey.answers(member: $0) }).count == members.count)
    }

    /// What Redis Cluster hashes: the text between the first `{` and the next `}`.
    func hashTag(_ key: String) throws -> Substring {
        let open = try #require(key.firstIndex(of: "{"))
        let close = try #require(key[open...].firstIndex(of: "}"))
        return key[key.index(after: open)..<close]
    }

    @Test(arguments: ["CARD-1", "b}c", "{x}", "%"])
    func everyKeyOfAMemberSharesTheWholeHashTag(_ member: String) throws {
        let answers = CacheKey.answers(member: member)
        #expect(try hashTag(answers) == hashTag(CacheKey.generation(member: member)))
        #expect(try hashTag(answers) == hashTag(CacheKey.handledEvent(member: member, eventID: "evt_{1}")))
        // The tag spans the whole escaped member, up to the key's suffix.
        #expect(answers.hasSuffix("\(try hashTag(answers))}:answers"))
    }

    @Test(arguments: ["camp_1", "Fake Loyalty", "b}c", "{x}"])
    func everyExportKeyOfACampaignSharesTheWholeHashTag(_ campaign: String) throws {
        let data = CacheKey.exportData(campaign: campaign)
        #expect(try hashTag(data) == hashTag(CacheKey.exportLease(campaign: campaign)))
        #expect(try hashTag(data) == hashTag(CacheKey.exportJob(campaign: campaign)))
        let tag = try hashTag(data)
        #expect(data.hasPrefix("pe:export:{") && data.hasSuffix("\(tag)}:data"))
    }

    @Test func exportKeysNeverMeetMemberKeys() {
        #expect(CacheKey.exportData(campaign: "x") == "pe:export:{x}:data")
        #expect(CacheKey.exportData(campaign: "x") != CacheKey.answers(member: "x"))
        #expect(CacheKey.exportLease(campaign: "a}") != CacheKey.exportLease(campaign: "a%7D"))
    }
}

/// The tier hears Redis key names; it must find the member of exactly the answers hashes.
@Suite struct AnswersKeyTests {
    @Test(arguments: ["CARD-1", "b}c", "{x}", "%", "100%25", "zażółć", "a:answers", ""])
    func everyAnswersKeyGivesBackItsMember(_ member: String) {
        #expect(CacheKey.member(answersKey: Array(CacheKey.answers(member: member).utf8)) == member)
    }

    @Test func otherKeysAreNotAnswers() {
        let keys = [CacheKey.generation(member: "m"), CacheKey.lease(member: "m", campaign: "c}:answers"),
                    CacheKey.handledEvent(member: "m", eventID: "e}:answers"), CacheKey.exportData(campaign: "c"),
                    "pe:{a}b}:answers", "pe:{%zz}:answers", "pe:{:answers", "x:{m}:answers", "pe:{%FF}:answers"]
        for key in keys { #expect(CacheKey.member(answersKey: Array(key.utf8)) == nil, "\(key)") }
    }
}
