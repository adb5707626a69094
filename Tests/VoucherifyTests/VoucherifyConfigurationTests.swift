import Testing
@testable import Voucherify

@Suite struct VoucherifyConfigurationTests {
    func baseURL(_ url: String) throws -> String {
        try VoucherifyConfiguration(baseURL: url, appID: "id", appToken: "token").baseURL
    }

    @Test(arguments: [
        ("https://api.voucherify.io", "https://api.voucherify.io"),
        ("https://api.voucherify.io/", "https://api.voucherify.io"),
        ("https://us1.api.voucherify.io", "https://us1.api.voucherify.io"),
        ("http://a", "http://a"),
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090"),
        ("HTTP://Fake:1/", "HTTP://Fake:1"),
        ("http://[::1]:8090", "http://[::1]:8090"),
        ("http://[::1]", "http://[::1]"),
    ])
    func acceptsSchemeHostAndPort(_ given: String, _ kept: String) throws {
        #expect(try baseURL(given) == kept)
    }

    /// A path would be prepended to every call and turn each into a misleading 404.
    @Test(arguments: ["https://api.voucherify.io/v1", "https://api.voucherify.io/v1/", "http://a/b", "http://a//"])
    func refusesAPath(_ url: String) {
        do {
            _ = try baseURL(url)
            Issue.record("\(url) was accepted")
        } catch {
            #expect("\(error)".contains("no path"))
        }
    }

    @Test(arguments: ["ftp://api.voucherify.io", "http://", "https://", "api.voucherify.io", "http://a b", "http://a?x=1",
                      "http://a#f", "http://user:pw@a", "http://a:0", "http://a:99999", "http://a:x", "http://:80", "http://[::1", "http://[::1:80", ""])
    func refusesOtherShapes(_ url: String) {
        #expect(throws: VoucherifyConfiguration.BaseURLError.self) { try baseURL(url) }
    }
}
