import Testing
import Voucherify
@testable import PointsExpiryServer

/// The budget's arithmetic (`RateBudgetState`), which the Redis script transcribes.
@Suite struct RateBudgetMathTests {
    static let start: Int64 = 1_800_000_000_000

    static func rules(_ rate: String?, reserve: String = "0.5") throws -> RateBudgetRules {
        RateBudgetRules(setting: try rate.map { text throws(ConfigurationError) in try RateLimitSetting(parsing: text) },
                        reserve: try InteractiveReserve(parsing: reserve))
    }

    /// A state with its rules, driven at explicit times.
    struct Budget {
        let rules: RateBudgetRules
        var state: RateBudgetState

        init(_ rate: String?, reserve: String = "0.5") throws {
            rules = try RateBudgetMathTests.rules(rate, reserve: reserve)
            state = RateBudgetState(rules: rules)
        }

        mutating func take(_ wanted: Int64, _ priority: AdmissionPriority = .interactive, at offset: Int64 = 0) -> BudgetDecision {
            state.take(upTo: wanted, for: priority, rules: rules, now: RateBudgetMathTests.start + offset)
        }

        mutating func observe(limit: Int? = nil, remaining: Int? = nil, blockedForSeconds: Int? = nil, at offset: Int64 = 0) {
            guard let recorded = rules.recording(RateLimitObservation(limit: limit, remaining: remaining, blockedForSeconds: blockedForSeconds)) else { return }
            state.observe(recorded, rules: rules, now: RateBudgetMathTests.start + offset)
        }
    }

    @Test func rulesCountInMillisecondUnits() throws {
        let perMinute = try Self.rules("100/min")
        #expect(perMinute.capacity == 100 * 60_000)
        #expect(perMinute.refillPerMillisecond == 100)
        #expect(perMinute.unitsPerToken == 60_000)
        #expect(perMinute.warmingFloor == 50 * 60_000)
        #expect(perMinute.remainingHorizonMilliseconds == 60_000)
        #expect(perMinute.stateLifetimeMilliseconds == 60_000 + 60_000 + 300_000)

        let perHour = try Self.rules("100/hour")
        #expect(perHour.remainingHorizonMilliseconds == 3_600_000)
        // The largest setting stays far inside what Lua's doubles hold exactly.
        #expect(try Self.rules("1000000/hour").capacity < 10_000_000_000_000)

        let unset = try Self.rules(nil)
        #expect(unset.capacity == 0)
        #expect(unset.remainingHorizonMilliseconds == 60_000)
        #expect(!unset.warmingNeverFits)
    }

    @Test func aFreshBucketGrantsItsCapacityThenSaysWhenTheNextTokenIsDue() throws {
        var budget = try Budget("10/min")
        #expect(budget.take(12) == BudgetDecision(granted: 10, waitMilliseconds: 6_000, tokensLeft: 0))
        #expect(budget.take(1, at: 1) == BudgetDecision(granted: 0, waitMilliseconds: 5_999, tokensLeft: 0))
    }

    @Test func theBucketRefillsContinuouslyUpToItsCapacity() throws {
        var budget = try Budget("10/min")
        #expect(budget.take(10).granted == 10)
        #expect(budget.take(1, at: 3_000) == BudgetDecision(granted: 0, waitMilliseconds: 3_000, tokensLeft: 0))
        #expect(budget.take(1, at: 6_000) == BudgetDecision(granted: 1, waitMilliseconds: 0, tokensLeft: 0))
        #expect(budget.take(2, at: 18_000).granted == 2)
        // Ten hours idle: full, not more.
        #expect(budget.take(100, at: 36_000_000).granted == 10)
    }

    @Test func warmingNeverTakesTheBucketBelowTheReserve() throws {
        var budget = try Budget("10/min")
        #expect(budget.take(10, .warming) == BudgetDecision(granted: 5, waitMilliseconds: 6_000, tokensLeft: 5))
        #expect(budget.take(1, .warming, at: 1).granted == 0)
        #expect(budget.take(10, .interactive, at: 2).granted == 5)
        // Warming waits for the bucket to be back above the reserve, not for the next token.
        #expect(budget.take(1, .warming, at: 3) == BudgetDecision(granted: 0, waitMilliseconds: 36_000 - 3, tokensLeft: 0))
    }

    @Test func aReserveOfHalfATokenRoundsInInteractivesFavour() throws {
        var budget = try Budget("5/hour")
        #expect(budget.take(5, .warming).granted == 2)
        #expect(budget.take(5, .interactive).granted == 3)
    }

    @Test(arguments: [("0.9", false), ("0.91", true), ("1", true), ("0", false)])
    func aReserveThatLeavesNoWholeTokenShutsWarmingOut(_ reserve: String, _ never: Bool) throws {
        #expect(try Self.rules("10/min", reserve: reserve).warmingNeverFits == never)
    }

    @Test func withoutARateOnlyVoucherifysRemainingLimits() throws {
        var budget = try Budget(nil)
        #expect(budget.take(64) == BudgetDecision(granted: 64, waitMilliseconds: 0, tokensLeft: nil))
        budget.observe(remaining: 3, at: 10)
        #expect(budget.take(5, at: 20) == BudgetDecision(granted: 3, waitMilliseconds: 60_000 - 10, tokensLeft: nil))
        #expect(budget.take(1, at: 60_009).granted == 0)
        // One horizon after the last report Voucherify's window has reset: no cap until the next report.
        #expect(budget.take(64, at: 60_010).granted == 64)
    }

    @Test func theLowestReportedRemainingWinsAndCallsSinceCount() throws {
        var budget = try Budget(nil)
        budget.observe(remaining: 4)
        budget.observe(remaining: 3, at: 5)
        #expect(budget.take(2, at: 6).granted == 2)
        #expect(budget.take(3, at: 7).granted == 1)
        #expect(budget.state.remainingUntil == Self.start + 5 + 60_000)
    }

    @Test func theRemainingCapAndTheBucketBothApply() throws {
        var budget = try Budget("10/min")
        budget.observe(remaining: 2)
        #expect(budget.take(10) == BudgetDecision(granted: 2, waitMilliseconds: 60_000, tokensLeft: 8))
    }

    @Test func warmingLeavesTheReserveOfVoucherifysLimitToo() throws {
        var budget = try Budget(nil)
        budget.observe(limit: 10, remaining: 7)
        #expect(budget.take(5, .warming).granted == 2)
        #expect(budget.take(5, .warming).granted == 0)
        #expect(budget.take(9, .interactive).granted == 5)

        // Without a reported limit the configured N stands in for it.
        var configured = try Budget("10/hour")
        configured.observe(remaining: 6)
        #expect(configured.take(5, .warming).granted == 1)
    }

    @Test func a429BlocksEverythingUntilItsTimeHasPassed() throws {
        var budget = try Budget("10/min")
        budget.observe(blockedForSeconds: 3)
        #expect(budget.take(1) == BudgetDecision(granted: 0, waitMilliseconds: 3_000, tokensLeft: 10))
        #expect(budget.take(1, at: 2_999).waitMilliseconds == 1)
        #expect(budget.take(1, at: 3_000).granted == 1)
    }

    @Test func aBlockReplacesTheRemainingCapAndOutlastsReportsOfTheOldWindow() throws {
        var budget = try Budget(nil)
        budget.observe(remaining: 0)
        budget.observe(blockedForSeconds: 2, at: 10)
        // An answer to a call that was in flight during the block describes the window before it.
        budget.observe(remaining: 0, at: 1_000)
        #expect(budget.take(1, at: 1_500).waitMilliseconds == 510)
        #expect(budget.take(5, at: 2_010).granted == 5)
        // A shorter block does not shorten a longer one.
        budget.observe(blockedForSeconds: 10, at: 3_000)
        budget.observe(blockedForSeconds: 1, at: 3_000)
        #expect(budget.take(1, at: 4_000).waitMilliseconds == 9_000)
    }

    @Test func observationsAreClampedNeverTrustedRaw() throws {
        let rules = try Self.rules("10/min")
        #expect(rules.recording(RateLimitObservation()) == nil)
        #expect(rules.recording(RateLimitObservation(limit: 100)) == nil)
        #expect(rules.recording(RateLimitObservation(blockedForSeconds: Int.max))?.blockedForMilliseconds == 300_000)
        #expect(rules.recording(RateLimitObservation(blockedForSeconds: 0))?.blockedForMilliseconds == 1_000)
        #expect(rules.recording(RateLimitObservation(blockedForSeconds: -5))?.blockedForMilliseconds == 1_000)
        #expect(rules.recording(RateLimitObservation(remaining: -3)) == BudgetObservation(remaining: 0, remainingReserve: 5, blockedForMilliseconds: 0, resetJump: 64))
        #expect(rules.recording(RateLimitObservation(limit: Int.max, remaining: Int.max))
            == BudgetObservation(remaining: 1_000_000_000, remainingReserve: 500_000_000, blockedForMilliseconds: 0, resetJump: 250_000_000))
        #expect(rules.recording(RateLimitObservation(limit: 7, remaining: 1))?.remainingReserve == 4)
    }

    /// Answers to concurrent calls arrive out of order: a late, higher remaining is an older word
    /// and must not raise the cap; a rise of a quarter of the limit is Voucherify's new window.
    @Test func aLateHigherRemainingDoesNotRaiseTheCapButANewWindowDoes() throws {
        var budget = try Budget("1000/min")
        budget.observe(remaining: 5)
        budget.observe(remaining: 40)
        #expect(budget.take(1000).granted == 5)
        budget.observe(remaining: 300)
        #expect(budget.take(1000).granted == 300)
    }

    @Test func aClockSteppingBackCannotStallTheBudgetLongerThanABlock() throws {
        var budget = try Budget("10/min")
        budget.observe(blockedForSeconds: 300)
        #expect(budget.take(10, at: -3_600_000) == BudgetDecision(granted: 0, waitMilliseconds: 300_000, tokensLeft: 10))
        #expect(budget.take(10, at: -3_300_000).granted == 10)
    }

    @Test func spendingElsewhereEmptiesTheBucketButNoFurther() throws {
        var budget = try Budget("10/min")
        budget.observe(remaining: 5)
        budget.state.spend(3, rules: budget.rules, now: Self.start)
        #expect(budget.take(10) == BudgetDecision(granted: 2, waitMilliseconds: 60_000, tokensLeft: 5))
        budget.state.spend(50, rules: budget.rules, now: Self.start)
        #expect(budget.state.tokens == 0)
        #expect(budget.state.remaining == 0)
    }

    @Test(arguments: [(Int64(0), 1), (1, 1), (999, 1), (1_000, 1), (1_001, 2), (300_000, 300), (Int64.max, Int(Int64.max / 1000) + 1)])
    func retryAfterIsWholeSecondsRoundedUpAtLeastOne(_ milliseconds: Int64, _ seconds: Int) {
        #expect(RateBudget.seconds(milliseconds) == seconds)
    }
}
