import ExpiryDomain
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

    @Test func failuresInARowBackOffUpToTheRefreshInterval() {
        let hourly = ExportTiming(refreshSeconds: 3600)
        #expect((1...8).map { hourly.failureCooldown(afterFailures: $0) / 1000 } == [60, 120, 240, 480, 960, 1920, 3600, 3600])
        #expect(hourly.failureCooldown(afterFailures: 0) == 60_000)
        #expect(hourly.failureCooldown(afterFailures: 1_000_000) == 3_600_000)
        #expect(hourly.failureCooldown(afterFailures: .max) == 3_600_000)
        // The job state outlives the longest cooldown it may hold.
        #expect(ExportTiming(refreshSeconds: 31 * 86_400).jobLifetimeMilliseconds > 31 * 86_400_000)
        let quick = ExportTiming(refreshSeconds: 2)
        #expect(quick.failureCooldown(afterFailures: 5) == 2000)
    }

    @Test func anExportWithTooManyMalformedRowsIsRefused() {
        let timing = ExportTiming(refreshSeconds: 3600)
        #expect(!timing.refuses(ExportRowCounts(total: 100, counted: 95, skipped: 0, malformed: 5)))
        #expect(!timing.refuses(ExportRowCounts(total: 100, counted: 90, skipped: 0, malformed: 10)))
        #expect(timing.refuses(ExportRowCounts(total: 100, counted: 89, skipped: 0, malformed: 11)))
        #expect(timing.refuses(ExportRowCounts(total: 3, counted: 0, skipped: 2, malformed: 1)))
        #expect(!timing.refuses(ExportRowCounts(total: 0)))
        #expect(!timing.refuses(ExportRowCounts(total: 5, counted: 0, skipped: 5)))
    }

    @Test func aggregatesOutliveTwoRefreshesAndAWeek() {
        #expect(ExportTiming(refreshSeconds: 3600).dataLifetimeMilliseconds == 8 * 86_400_000)
        #expect(ExportTiming(refreshSeconds: 31 * 86_400).dataLifetimeMilliseconds == 62 * 86_400_000)
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
