import Testing
@testable import WarmJob

@Suite struct ProgressTextTests {
    private let midway = WarmProgress(requested: 2000, warmed: 1100, alreadyFresh: 80, failed: 20, notDone: 0, elapsedMilliseconds: 5000)

    @Test func plainLineForLogCollectors() {
        #expect(ProgressText.line(midway) == "warm progress: done=1200/2000 warmed=1100 fresh=80 failed=20 pending=800 rate=240.0/s eta=4s")
    }

    @Test func plainLineBeforeAnythingIsDone() {
        let start = WarmProgress(requested: 10, warmed: 0, alreadyFresh: 0, failed: 0, notDone: 0, elapsedMilliseconds: 0)
        #expect(ProgressText.line(start) == "warm progress: done=0/10 warmed=0 fresh=0 failed=0 pending=10 rate=0.0/s eta=unknown")
    }

    @Test func terminalBarRedrawsInPlace() {
        let bar = ProgressText.bar(midway, width: 10)
        #expect(bar == "\r[######----] 1200/2000 60%  240.0/s  ETA 4s  failed 20\u{1B}[K")
    }

    @Test func durations() {
        #expect(ProgressText.duration(milliseconds: 8_340, tenths: true) == "8.3s")
        #expect(ProgressText.duration(milliseconds: 8_340, tenths: false) == "8s")
        #expect(ProgressText.duration(milliseconds: 125_000, tenths: true) == "2m05s")
        #expect(ProgressText.duration(milliseconds: 3_725_000, tenths: false) == "1h02m")
    }

    @Test func summaryNamesEveryCount() throws {
        var ledger = WarmLedger(members: ["A", "B", "C", "D", "NOPE"], batchSize: 5)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(.answered(WarmAnswer(warmed: 2, alreadyFresh: 1,
                                           failed: [MemberFailure(member: "NOPE", code: "not_found", message: "")], deferred: ["D"])),
                      for: batch, now: 0)
        ledger.stop(.timedOut)
        let summary = ProgressText.summary(ledger, members: MemberList(codes: [], blankLines: 2, duplicateLines: 3), elapsedMilliseconds: 2_500)
        #expect(summary == """
            warm summary: stopped at the --timeout
              requested:     5 distinct members
              warmed:        2
              already fresh: 1
              failed:        1 (not_found: 1)
              not done:      1 (deferred: 1)
              skipped lines: 5 (blank: 2, duplicate: 3)
              elapsed:       2.5s
              rate:          1.6 members/s

            """)
    }
}
