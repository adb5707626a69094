import Testing
@testable import WarmJob

@Suite struct WarmLedgerTests {
    private func members(_ count: Int) -> [String] { (1...count).map { "M\($0)" } }

    /// Everything the call asked for came back warm.
    private func allWarmed(_ batch: WarmLedger.Batch) -> WarmCallOutcome {
        .answered(WarmAnswer(warmed: batch.members.count, alreadyFresh: 0))
    }

    @Test func batchesTakeMembersInOrderUpToTheBatchSize() throws {
        var ledger = WarmLedger(members: members(5), batchSize: 2)
        let first = try ledger.sendBatch(now: 0)
        let second = try ledger.sendBatch(now: 0)
        let third = try ledger.sendBatch(now: 0)
        #expect(first.members == ["M1", "M2"])
        #expect(second.members == ["M3", "M4"])
        #expect(third.members == ["M5"])
        ledger.expectNothingToSend(now: 0)
        #expect(ledger.callsInFlight == 3)
        #expect(!ledger.isFinished)
    }

    @Test func answeredCallsCountWarmedAndFreshAndFinishWithExitZero() throws {
        var ledger = WarmLedger(members: members(4), batchSize: 4)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(.answered(WarmAnswer(warmed: 3, alreadyFresh: 1)), for: batch, now: 10)
        #expect(ledger.warmed == 3)
        #expect(ledger.alreadyFresh == 1)
        #expect(ledger.isFinished)
        #expect(ledger.exitCode == 0)
        #expect(ledger.failedOutRows.isEmpty)
    }

    @Test func failedMembersAreRecordedWithTheirCodeAndExitIsOne() throws {
        var ledger = WarmLedger(members: ["A", "B", "NOPE"], batchSize: 3)
        let batch = try ledger.sendBatch(now: 0)
        let failure = MemberFailure(member: "NOPE", code: "not_found", message: "loyalty card \"NOPE\" was not found")
        ledger.record(.answered(WarmAnswer(warmed: 2, alreadyFresh: 0, failed: [failure])), for: batch, now: 0)
        #expect(ledger.isFinished)
        #expect(ledger.failures == [failure])
        #expect(ledger.exitCode == 1)
        #expect(ledger.failedOutRows == [["NOPE", "not_found", "loyalty card \"NOPE\" was not found"]])
    }

    @Test func deferredMembersAreRetriedAfterTheFreshOnes() throws {
        var ledger = WarmLedger(members: members(4), batchSize: 2)
        let first = try ledger.sendBatch(now: 0)
        ledger.record(.answered(WarmAnswer(warmed: 1, alreadyFresh: 0, deferred: ["M2"])), for: first, now: 0)
        let second = try ledger.sendBatch(now: 0)
        #expect(second.members == ["M3", "M4"])
        ledger.record(allWarmed(second), for: second, now: 0)
        let retry = try ledger.sendBatch(now: 0)
        #expect(retry.members == ["M2"])
        ledger.record(allWarmed(retry), for: retry, now: 0)
        #expect(ledger.isFinished)
        #expect(ledger.warmed == 4)
        #expect(ledger.exitCode == 0)
    }

    @Test func aCallThatCameBackAllDeferredPausesSendingWithAGrowingBackoff() throws {
        var ledger = WarmLedger(members: ["A"], batchSize: 1)
        var now: Int64 = 1_000
        var pauses: [Int64] = []
        for _ in 0..<8 {
            let batch = try ledger.sendBatch(now: now)
            ledger.record(.answered(WarmAnswer(warmed: 0, alreadyFresh: 0, deferred: ["A"])), for: batch, now: now)
            ledger.expectNothingToSend(now: now)
            let resumesAt = try #require(ledger.resumesAt)
            pauses.append(resumesAt - now)
            now = resumesAt
        }
        #expect(pauses == [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000])
        let batch = try ledger.sendBatch(now: now)
        ledger.record(allWarmed(batch), for: batch, now: now)
        #expect(ledger.isFinished)
        #expect(ledger.exitCode == 0)
    }

    @Test func progressResetsTheBackoff() throws {
        var ledger = WarmLedger(members: ["A", "B", "C"], batchSize: 1)
        let a = try ledger.sendBatch(now: 0)
        ledger.record(.answered(WarmAnswer(warmed: 0, alreadyFresh: 0, deferred: ["A"])), for: a, now: 0)
        let b = try ledger.sendBatch(now: 500)
        ledger.record(.answered(WarmAnswer(warmed: 0, alreadyFresh: 1)), for: b, now: 500)
        let c = try ledger.sendBatch(now: 500)
        ledger.record(.answered(WarmAnswer(warmed: 0, alreadyFresh: 0, deferred: ["C"])), for: c, now: 600)
        #expect(ledger.resumesAt == 1_100)
    }

    @Test func aRetryableErrorRequeuesTheBatchAndHonoursRetryAfter() throws {
        var ledger = WarmLedger(members: ["A", "B"], batchSize: 2)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(.retryable(code: "resource_exhausted", message: "budget spent", retryAfterSeconds: 7), for: batch, now: 100)
        ledger.expectNothingToSend(now: 7_099)
        let retry = try ledger.sendBatch(now: 7_100)
        #expect(retry.members == ["A", "B"])
        #expect(ledger.failures.isEmpty)
    }

    @Test func retryAfterFromTheNetworkIsClamped() throws {
        var ledger = WarmLedger(members: ["A"], batchSize: 1)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(.retryable(code: "unavailable", message: "", retryAfterSeconds: Int.max), for: batch, now: 0)
        #expect(ledger.resumesAt == 300_000)
    }

    @Test func aRejectedCallFailsItsMembersWithTheCode() throws {
        var ledger = WarmLedger(members: ["A", "B"], batchSize: 2)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(.rejected(code: "invalid_argument", message: "campaign is required"), for: batch, now: 0)
        #expect(ledger.failures.map(\.member) == ["A", "B"])
        #expect(ledger.failures.allSatisfy { $0.code == "invalid_argument" })
        #expect(ledger.isFinished)
        #expect(ledger.exitCode == 1)
    }

    @Test func membersLongerThanTheLimitFailLocallyAndAreNeverSent() throws {
        let long = String(repeating: "x", count: 513)
        var ledger = WarmLedger(members: ["A", long, String(repeating: "y", count: 512)], batchSize: 10)
        #expect(ledger.requested == 3)
        #expect(ledger.failures.map(\.member) == [long])
        #expect(ledger.failures.first?.code == "invalid_argument")
        let batch = try ledger.sendBatch(now: 0)
        #expect(batch.members.count == 2)
        #expect(!batch.members.contains(long))
    }

    private let refused = WarmCallOutcome.notConnected(message: "Couldn't connect to server")
    private let framingError = WarmCallOutcome.broken(message: "Error in the HTTP2 framing layer")

    @Test func aFailureToConnectBeforeAnyCallConnectedEndsTheJobWithExitTwo() throws {
        var ledger = WarmLedger(members: members(4), batchSize: 2)
        let first = try ledger.sendBatch(now: 0)
        let second = try ledger.sendBatch(now: 0)
        ledger.record(refused, for: first, now: 0)
        #expect(ledger.fatalProblem == .unreachable("Couldn't connect to server"))
        ledger.expectNothingToSend(now: 0)
        ledger.record(refused, for: second, now: 0)
        #expect(ledger.isFinished)
        #expect(ledger.exitCode == 2)
    }

    @Test func aFailureToConnectAfterTheServiceAnsweredIsRetried() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 1)
        let first = try ledger.sendBatch(now: 0)
        ledger.record(allWarmed(first), for: first, now: 0)
        let second = try ledger.sendBatch(now: 0)
        ledger.record(refused, for: second, now: 0)
        #expect(ledger.fatalProblem == nil)
        let retry = try ledger.sendBatch(now: 500)
        #expect(retry.members == ["M2"])
    }

    /// A first call may run for as long as it asks: a connection it made shows the service is
    /// there before any answer does.
    @Test func aFailureToConnectWhileAConnectedCallRunsIsRetried() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 1)
        _ = try ledger.sendBatch(now: 0)
        let second = try ledger.sendBatch(now: 0)
        ledger.recordConnectionToService()
        ledger.record(refused, for: second, now: 100)
        #expect(ledger.fatalProblem == nil)
        #expect(try ledger.sendBatch(now: 600).members == ["M2"])
    }

    @Test func aFailureToConnectAfterACallTimedOutIsRetried() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 1)
        let first = try ledger.sendBatch(now: 0)
        ledger.record(.retryable(code: "unavailable", message: "no answer within 25000 ms", retryAfterSeconds: nil), for: first, now: 25_000)
        let second = try ledger.sendBatch(now: 25_500)
        ledger.record(refused, for: second, now: 25_500)
        #expect(ledger.fatalProblem == nil)
    }

    @Test func anExchangeBrokenRightAfterConnectingBeforeAnyWasHeldMeansNoHTTP2There() throws {
        var ledger = WarmLedger(members: members(1), batchSize: 1)
        let batch = try ledger.sendBatch(now: 1_000)
        ledger.record(framingError, for: batch, now: 1_010)
        #expect(ledger.fatalProblem == .unreachable("Error in the HTTP2 framing layer, right after connecting (does the service speak HTTP/2 there?)"))
        #expect(ledger.exitCode == 2)
    }

    @Test func anExchangeBrokenPastTheConnectTimeoutIsRetried() throws {
        var ledger = WarmLedger(members: members(1), batchSize: 1)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(framingError, for: batch, now: Int64(WarmMembersCall.connectMilliseconds))
        #expect(ledger.fatalProblem == nil)
        #expect(try ledger.sendBatch(now: 5_500).members == ["M1"])
    }

    @Test func anExchangeBrokenWhileAnotherCallHoldsOneIsRetried() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 1)
        _ = try ledger.sendBatch(now: 0)
        let second = try ledger.sendBatch(now: 6_000)
        ledger.record(framingError, for: second, now: 6_010)
        #expect(ledger.fatalProblem == nil)
    }

    @Test func anExchangeBrokenAfterAnAnswerIsRetried() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 1)
        let first = try ledger.sendBatch(now: 0)
        ledger.record(allWarmed(first), for: first, now: 10)
        let second = try ledger.sendBatch(now: 10)
        ledger.record(framingError, for: second, now: 20)
        #expect(ledger.fatalProblem == nil)
        #expect(try ledger.sendBatch(now: 520).members == ["M2"])
    }

    @Test func unimplementedEndsTheJobWithExitTwo() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 2)
        let batch = try ledger.sendBatch(now: 0)
        ledger.record(.unsupported(message: "no such method"), for: batch, now: 0)
        #expect(ledger.fatalProblem == .unsupported("no such method"))
        #expect(ledger.isFinished)
        #expect(ledger.exitCode == 2)
    }

    @Test func theTimeoutLeavesUnsentAndStillDeferredMembersNotDone() throws {
        var ledger = WarmLedger(members: members(5), batchSize: 2)
        let inFlight = try ledger.sendBatch(now: 0)
        ledger.stop(.timedOut)
        ledger.expectNothingToSend(now: 0)
        #expect(!ledger.isFinished, "the call in flight still counts")
        ledger.record(.answered(WarmAnswer(warmed: 1, alreadyFresh: 0, deferred: ["M2"])), for: inFlight, now: 0)
        #expect(ledger.isFinished)
        #expect(ledger.warmed == 1)
        #expect(ledger.notDone.map(\.member) == ["M3", "M4", "M5", "M2"])
        #expect(ledger.exitCode == 1)
        #expect(ledger.failedOutRows.map { $0[1] } == ["deferred", "deferred", "deferred", "deferred"])
        let progress = ledger.progress(elapsedMilliseconds: 1_000)
        #expect(progress.done == 1)
        #expect(progress.notDone == 4)
        #expect(progress.pending == 0)
    }

    @Test func anInterruptWaitsForCallsInFlightAndLeavesTheRestCancelled() throws {
        var ledger = WarmLedger(members: members(3), batchSize: 1)
        let inFlight = try ledger.sendBatch(now: 0)
        ledger.stop(.interrupted)
        ledger.record(allWarmed(inFlight), for: inFlight, now: 0)
        #expect(ledger.isFinished)
        #expect(ledger.failedOutRows.map { $0[0] + "," + $0[1] } == ["M2,cancelled", "M3,cancelled"])
        #expect(ledger.exitCode == 1)
    }

    @Test func abandoningCallsInFlightLeavesTheirMembersNotDoneAndIgnoresLateAnswers() throws {
        var ledger = WarmLedger(members: members(2), batchSize: 1)
        let first = try ledger.sendBatch(now: 0)
        ledger.stop(.interrupted)
        ledger.abandonCallsInFlight()
        #expect(ledger.isFinished)
        ledger.record(allWarmed(first), for: first, now: 0)
        #expect(ledger.warmed == 0)
        #expect(ledger.notDone.map(\.member) == ["M2", "M1"])
    }

    @Test func anAnswerCountsOnlyTheCallsOwnMembersOnce() throws {
        var ledger = WarmLedger(members: ["A", "B", "C"], batchSize: 3)
        let batch = try ledger.sendBatch(now: 0)
        let answer = WarmAnswer(
            warmed: 1, alreadyFresh: 0,
            failed: [MemberFailure(member: "A", code: "not_found", message: ""), MemberFailure(member: "A", code: "not_found", message: ""),
                     MemberFailure(member: "STRANGER", code: "not_found", message: "")],
            deferred: ["B", "B", "OTHER"])
        ledger.record(.answered(answer), for: batch, now: 0)
        #expect(ledger.failures.map(\.member) == ["A"])
        #expect(ledger.warmed == 1)
        let retry = try ledger.sendBatch(now: 0)
        #expect(retry.members == ["B"])
    }

    @Test func countsThatDisagreeWithTheMembersAreClampedSoTotalsAddUp() throws {
        var ledger = WarmLedger(members: members(4), batchSize: 2)
        let over = try ledger.sendBatch(now: 0)
        ledger.record(.answered(WarmAnswer(warmed: Int(Int32.max), alreadyFresh: Int(Int32.max))), for: over, now: 0)
        #expect(ledger.warmed == 2)
        #expect(ledger.alreadyFresh == 0)
        let under = try ledger.sendBatch(now: 0)
        ledger.record(.answered(WarmAnswer(warmed: 0, alreadyFresh: 1)), for: under, now: 0)
        #expect(ledger.warmed + ledger.alreadyFresh == 4)
        #expect(ledger.alreadyFresh == 1)
    }
}

extension WarmLedger {
    /// The next batch, which the test expects there to be.
    mutating func sendBatch(now: Int64, sourceLocation: SourceLocation = #_sourceLocation) throws -> Batch {
        let batch = nextBatch(now: now)
        return try #require(batch, "a batch may be sent now", sourceLocation: sourceLocation)
    }

    mutating func expectNothingToSend(now: Int64, sourceLocation: SourceLocation = #_sourceLocation) {
        let batch = nextBatch(now: now)
        #expect(batch == nil, "nothing may be sent now", sourceLocation: sourceLocation)
    }
}
