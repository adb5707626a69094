import Foundation
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

    /// What a job killed mid-run leaves: a file to run again from, naming every member.
    @Test func atStartUpEveryMemberIsNotStartedAndTheFileIsAMembersFile() throws {
        let text = FailedOutFile.contents(FailedOutFile.notStartedRows(["A", "B,1"]))
        #expect(String(decoding: text, as: UTF8.self)
            == "code,error,message\nA,not_started,the job ended before this member was sent\n\"B,1\",not_started,the job ended before this member was sent\n")
        #expect(try MemberInput.parse(text, source: "failed.csv").codes == ["A", "B,1"])
    }

    @Test func writingReplacesTheFileAndLeavesNothingElseBeside() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pe-failed-out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("failed.csv").path
        try FailedOutFile.write(FailedOutFile.notStartedRows(["A", "B"]), to: path)
        try FailedOutFile.write([["B", "not_found", "gone"]], to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "code,error,message\nB,not_found,gone\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["failed.csv"])
    }

    @Test func anUnwritablePlaceIsAUsageErrorNamingIt() {
        #expect(throws: WarmUsageError("cannot write --failed-out file /nonexistent/failed.csv: No such file or directory")) {
            try FailedOutFile.write([], to: "/nonexistent/failed.csv")
        }
    }

    @Test func theFileIsAMembersFileForARerun() throws {
        let rows = [["A,1", "not_found", "multi\nline"], ["B", "cancelled", "stopped"]]
        let list = try MemberInput.parse(FailedOutFile.contents(rows), source: "failed.csv")
        #expect(list == MemberList(codes: ["A,1", "B"]))
    }
}
