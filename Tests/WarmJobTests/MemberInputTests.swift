import Testing
@testable import WarmJob

@Suite struct MemberInputTests {
    private func parse(_ text: String, source: String = "members.txt") throws -> MemberList {
        try MemberInput.parse(Array(text.utf8), source: source)
    }

    private func usageError(_ text: String, source: String = "members.txt") -> String? {
        do {
            _ = try MemberInput.parse(Array(text.utf8), source: source)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func plainListHasOneCodePerLineTrimmed() throws {
        let list = try parse("A-1\n  B-2 \t\nC-3")
        #expect(list == MemberList(codes: ["A-1", "B-2", "C-3"]))
    }

    @Test func plainListSkipsBlankLinesAndDuplicatesAndCountsThem() throws {
        let list = try parse("A\n\n   \nB\nA\nB\nC\n\n")
        #expect(list.codes == ["A", "B", "C"])
        #expect(list.blankLines == 3)
        #expect(list.duplicateLines == 2)
    }

    @Test func theNewlineEndingTheLastLineIsNotABlankLine() throws {
        #expect(try parse("A\nB\n").blankLines == 0)
        #expect(try parse("A\r\nB\r\n").blankLines == 0)
    }

    @Test func plainListWithCRLFLineEnds() throws {
        let list = try parse("A\r\nB\r\n\r\nC")
        #expect(list.codes == ["A", "B", "C"])
        #expect(list.blankLines == 1)
    }

    @Test func byteOrderMarkIsDroppedFromAPlainList() throws {
        let list = try MemberInput.parse([0xEF, 0xBB, 0xBF] + Array("A\nB\n".utf8), source: "f")
        #expect(list.codes == ["A", "B"])
    }

    @Test func byteOrderMarkBeforeACSVHeaderStillFindsTheCodeColumn() throws {
        let list = try MemberInput.parse([0xEF, 0xBB, 0xBF] + Array("code,name\r\nA,Ann\r\nB,Bob\r\n".utf8), source: "f")
        #expect(list.codes == ["A", "B"])
    }

    @Test func csvCodeColumnInAnyPositionAnyCaseWithSpaces() throws {
        #expect(try parse("code\nA\nB").codes == ["A", "B"])
        #expect(try parse("name,tier,Code\nAnn,gold,A\nBob,silver,B").codes == ["A", "B"])
        #expect(try parse("name, CODE ,tier\nAnn, A ,gold\nBob,B,silver").codes == ["A", "B"])
    }

    @Test func csvQuotingIsHonoured() throws {
        let csv = """
            name,code
            "Smith, Ann","A,1"
            "Bob ""the"" Builder","B""2"
            "multi
            line",C-3
            """
        #expect(try parse(csv).codes == ["A,1", "B\"2", "C-3"])
    }

    @Test func csvWithCRLFLineEnds() throws {
        #expect(try parse("name,code\r\nAnn,A\r\nBob,B\r\n").codes == ["A", "B"])
    }

    @Test func csvBlankRowsShortRowsAndDuplicatesAreSkippedAndCounted() throws {
        let list = try parse("name,code\nAnn,A\n\nBob\nCid, \nDee,A\nEve,B\n")
        #expect(list.codes == ["A", "B"])
        #expect(list.blankLines == 3)
        #expect(list.duplicateLines == 1)
    }

    @Test func aFirstLineWithCommasButNoCodeColumnIsAnError() {
        #expect(usageError("name, id ,tier\nAnn,1,gold", source: "people.csv")
            == "no `code` column in people.csv (columns: name, id, tier)")
    }

    @Test func aQuoteLeftOpenInACSVIsAnErrorNamingTheRecord() {
        // The library reads the rest of the file into the open value; that code is refused.
        #expect(usageError("code\nA\n\"B\nC\nD\n") == "record 3 of members.txt: the code has a line break in it (a quote left open?)")
        #expect(usageError("name,code\nAnn,A\nBob,\"B\r\n2\"\n") == "record 3 of members.txt: the code has a line break in it (a quote left open?)")
    }

    @Test func aQuotedLineBreakInAnotherColumnIsFine() throws {
        #expect(try parse("name,code\n\"Ann\nSmith\",A\nBob,B\n").codes == ["A", "B"])
    }

    @Test func aPlainListLineWithOneQuoteKeepsIt() throws {
        #expect(try parse("A\n\"B\n").codes == ["A", "\"B"])
    }

    @Test func semicolonAndTabSeparatedFilesAreRefusedAskingForCommas() {
        #expect(usageError("code;name\nA;Ann\n", source: "export.csv")
            == "export.csv is separated by semicolons (first line: code;name): save it as a CSV with commas and a `code` column, or list one code per line")
        #expect(usageError("code\tname\nA\tAnn\n", source: "export.tsv")?.hasPrefix("export.tsv is separated by tabs") == true)
    }

    @Test func plainListLinesInQuotesLoseThem() throws {
        let list = try parse("\"A\"\n \"B,1\" \nC\n\"D \"\"E\"\"\"\r\n\"\"\n")
        #expect(list.codes == ["A", "B,1", "C", "D \"E\""])
        #expect(list.blankLines == 1)
    }

    @Test func plainListCodesKeepTheirCommasAndInnerQuotes() throws {
        #expect(try parse("A\nB,1\nC\"2\n").codes == ["A", "B,1", "C\"2"])
    }

    @Test func emptyInputIsAnError() {
        #expect(usageError("", source: "standard input") == "no members in standard input")
        #expect(usageError("\n \n\r\n") == "no members in members.txt")
        #expect(usageError("code\n") == "no members in members.txt")
    }

    @Test func aMissingFileIsAnErrorNamingIt() {
        #expect(throws: WarmUsageError("cannot read members file /nonexistent/members.csv: No such file or directory")) {
            try MemberInput.read(.file("/nonexistent/members.csv"))
        }
    }
}
