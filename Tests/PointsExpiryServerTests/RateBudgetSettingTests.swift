import Testing
import Voucherify
@testable import PointsExpiryServer

@Suite struct RateBudgetSettingTests {
    @Test(arguments: [
        ("100/min", 100, RateLimitSetting.Window.minute), ("2000/min", 2000, .minute), ("100/hour", 100, .hour),
        ("5/sec", 5, .second), ("1/SEC", 1, .second), ("1000000/hour", 1_000_000, .hour), ("007/min", 7, .minute),
    ])
    func readsARate(_ text: String, _ requests: Int, _ window: RateLimitSetting.Window) throws {
        let setting = try RateLimitSetting(parsing: text)
        #expect(setting.requests == requests)
        #expect(setting.window == window)
    }

    @Test(arguments: ["100", "100/", "/min", "0/min", "-1/min", "+5/min", "1000001/min", "99999999999999999999/min",
                      "1e3/min", "1.5/min", "100/day", "100/minute", "100/ min", "100/min/sec", "ten/min", ""])
    func refusesAnythingElseNamingTheVariable(_ text: String) {
        #expect {
            try RateLimitSetting(parsing: text)
        } throws: { error in
            (error as? ConfigurationError)?.variable == "VOUCHERIFY_RATE_LIMIT" && "\(error)".contains("N/min")
        }
    }

    @Test(arguments: [("0", 0.0), ("1", 1.0), ("0.5", 0.5), ("0.25", 0.25), ("1.000", 1.0), ("00.1", 0.1)])
    func readsAReserve(_ text: String, _ share: Double) throws {
        #expect(try InteractiveReserve(parsing: text).share == share)
    }

    @Test(arguments: ["1.5", "2", "-0.1", ".5", "5.", "0.5.1", "nan", "inf", "0x1p-1", "1e-1", "half", "", "0.000000000000000000001"])
    func refusesAReserveOutsideZeroToOne(_ text: String) {
        #expect {
            try InteractiveReserve(parsing: text)
        } throws: { error in
            (error as? ConfigurationError)?.variable == "VOUCHERIFY_INTERACTIVE_RESERVE"
        }
    }

    let required = ["VOUCHERIFY_APP_ID": "id", "VOUCHERIFY_APP_TOKEN": "token-value"]

    @Test func theServiceReadsBothVariables() throws {
        let defaults = try ServiceConfiguration.fromEnvironment(required, cores: 2)
        #expect(defaults.rateLimit == nil)
        #expect(defaults.interactiveReserve == .standard)
        #expect(defaults.interactiveReserve.share == 0.5)

        let set = try ServiceConfiguration.fromEnvironment(
            required.merging(["VOUCHERIFY_RATE_LIMIT": " 100/hour ", "VOUCHERIFY_INTERACTIVE_RESERVE": "0.2"]) { $1 }, cores: 2)
        #expect(set.rateLimit == (try RateLimitSetting(parsing: "100/hour")))
        #expect(set.interactiveReserve.share == 0.2)

        #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration.fromEnvironment(required.merging(["VOUCHERIFY_INTERACTIVE_RESERVE": "50%"]) { $1 }, cores: 2)
        }
    }

    @Test func metricsRenderEveryFamilyWithHelpAndType() {
        let metrics = Metrics()
        metrics.rateBudget.granted(.interactive)
        metrics.rateBudget.granted(.interactive)
        metrics.rateBudget.waited(.warming)
        metrics.rateBudget.refused(.warming)
        metrics.rateBudget.sawTokens(7)
        let text = metrics.render()
        for family in ["grants_total", "waits_total", "refusals_total", "local_decisions_total", "tokens"] {
            #expect(text.contains("# HELP points_expiry_rate_budget_\(family) "))
            #expect(text.contains("# TYPE points_expiry_rate_budget_\(family) "))
        }
        #expect(text.contains("points_expiry_rate_budget_grants_total{class=\"interactive\"} 2\n"))
        #expect(text.contains("points_expiry_rate_budget_grants_total{class=\"warming\"} 0\n"))
        #expect(text.contains("points_expiry_rate_budget_waits_total{class=\"warming\"} 1\n"))
        #expect(text.contains("points_expiry_rate_budget_refusals_total{class=\"warming\"} 1\n"))
        #expect(text.contains("points_expiry_rate_budget_tokens 7.0\n"))
    }
}
