import Testing
@testable import RedisClient

@Suite struct RedisConfigurationTests {
    @Test func parsesTheContractForm() throws {
        let plain = try RedisConfiguration(url: "redis://127.0.0.1:6379")
        #expect(plain.host == "127.0.0.1")
        #expect(plain.port == 6379)
        #expect(plain.password == nil)
        #expect(plain.database == 0)

        let full = try RedisConfiguration(url: "redis://:p%40ss:w0rd@cache.internal:6380/3")
        #expect(full.host == "cache.internal")
        #expect(full.port == 6380)
        #expect(full.password == "p%40ss:w0rd")
        #expect(full.database == 3)
    }

    @Test func acceptsAUserNameDefaultPortAndIPv6() throws {
        let withUser = try RedisConfiguration(url: "redis://default:secret@redis")
        #expect(withUser.password == "secret")
        #expect(withUser.port == 6379)
        let v6 = try RedisConfiguration(url: "redis://[::1]:7000/1")
        #expect(v6.host == "::1")
        #expect(v6.port == 7000)
        #expect(v6.database == 1)
    }

    @Test(arguments: ["http://127.0.0.1:6379", "redis://", "redis://host:0", "redis://host:70000", "redis://host:port",
                      "redis://host:6379/x", "redis://host:6379/-1"])
    func rejectsMalformedURLs(_ url: String) {
        #expect(throws: RedisURLError.self) { try RedisConfiguration(url: url) }
    }

    @Test func resolvesNamesToNumericAddressesOnce() throws {
        let resolved = try RedisConfiguration(url: "redis://localhost:6379").resolvingHost()
        #expect(["127.0.0.1", "::1"].contains(resolved.host))
        #expect(try RedisConfiguration(url: "redis://127.0.0.1").resolvingHost().host == "127.0.0.1")
        #expect(throws: RedisURLError.self) { try RedisConfiguration(url: "redis://no-such-host.invalid").resolvingHost() }
    }
}
