import Testing
@testable import PointsExpiryServer

@Suite struct ExportTimingTests {
    @Test func refreshIsDueAfterTheIntervalOrAtTheDeductionIfThatComesFirst() {
        let timing = ExportTiming(refreshSeconds: 3600)
        #expect(timing.refreshDue(generatedAt: 1_000, deductionDue: nil) == 3_601_000)
        #expect(timing.refreshDue(generatedAt: 1_000, deductionDue: 60_000) == 60_000)
        #expect(timing.refreshDue(generatedAt: 1_000, deductionDue: 9_000_000) == 3_601_000)
        // Saturates rather than trapping on an absurd stored instant.
        #expect(timing.refreshDue(generatedAt: .max - 10, deductionDue: nil) == .max)
    }

    @Test func pollsBackOffFromHalfASecondToTenSeconds() {
        let timing = ExportTiming(refreshSeconds: 3600)
        #expect((1...8).map { timing.pollDelay(before: $0) } == [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000])
        #expect(timing.pollDelay(before: 0) == 500)
        #expect(timing.pollDelay(before: 10_000) == 10_000)
    }

    @Test func cooldownAndSweepFollowTheRefreshInterval() {
        let hourly = ExportTiming(refreshSeconds: 3600)
        #expect(hourly.failureCooldownMilliseconds == 60_000)
        #expect(hourly.sweepMilliseconds == 60_000)
        let quick = ExportTiming(refreshSeconds: 2)
        #expect(quick.failureCooldownMilliseconds == 2000)
        #expect(quick.sweepMilliseconds == 1000)
        // A job's lease outlives its renewal period and its polls.
        #expect(hourly.leaseMilliseconds / 3 > hourly.maxPollMilliseconds)
    }
}
