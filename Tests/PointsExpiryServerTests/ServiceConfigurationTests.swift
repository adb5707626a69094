import Testing
@testable import PointsExpiryServer

@Suite struct ServiceConfigurationTests {
    let valid = ["VOUCHERIFY_APP_ID": "id", "VOUCHERIFY_APP_TOKEN": "token-value"]

    func configuration(_ overrides: [String: String]) throws(ConfigurationError) -> ServiceConfiguration {
        try ServiceConfiguration.fromEnvironment(valid.merging(overrides) { _, new in new }, cores: 2)
    }

    @Test func defaults() throws {
        let configuration = try configuration([:])
        #expect(configuration.server.listen == "127.0.0.1:8080")
        #expect(configuration.workers == 2)
        #expect(configuration.voucherify.baseURL == "https://api.voucherify.io")
        #expect(configuration.cacheTTLSeconds == 300)
        #expect(configuration.webhookSecret == nil)
    }

    @Test func aShortHostIsAValidUpstream() throws {
        #expect(try configuration(["VOUCHERIFY_API_URL": "http://a"]).voucherify.baseURL == "http://a")
    }

    @Test(arguments: ["https://api.voucherify.io/v1", "ftp://api.voucherify.io", "http://"])
    func aBadUpstreamURLNamesTheVariable(_ url: String) {
        #expect(throws: ConfigurationError.self) { try configuration(["VOUCHERIFY_API_URL": url]) }
        do {
            _ = try configuration(["VOUCHERIFY_API_URL": url])
        } catch {
            #expect(error.variable == "VOUCHERIFY_API_URL")
            #expect(!error.description.contains("token-value"))
        }
    }
}
