import Testing
@testable import WarmJob

@Suite struct FailedOutFileTests {
    @Test func withNothingToListItIsTheHeaderAlone() {
        #expect(String(decoding: FailedOutFile.contents([]), as: UTF8.self) == "code,error,message\n")
    }

    @Test func valuesAreQuotedWhereCSVNeedsIt() {
        let text = String(decoding: FailedOutFile.contents([["A,1", "not_found", "card \"A,1\" was not found"], ["B", "deferred", "late"]]), as: UTF8.self)
        #expect(text == "code,error,message\n\"A,1\",not_found,\"card \"\"A,1\"\" was not found\"\nB,deferred,late\n")
    }

    @Test func theFileIsAMembersFileForARerun() throws {
        let rows = [["A,1", "not_found", "multi\nline"], ["B", "cancelled", "stopped"]]
        let list = try MemberInput.parse(FailedOutFile.contents(rows), source: "failed.csv")
        #expect(list == MemberList(codes: ["A,1", "B"]))
    }
}
