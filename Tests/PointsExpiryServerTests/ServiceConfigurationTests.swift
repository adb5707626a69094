import Foundation
import Testing
@testable import PointsExpiryServer
import TestSupport

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
        #expect(configuration.cacheWindows == CacheWindows(ttlSeconds: 300, staleWhileRevalidateSeconds: 60, staleIfErrorSeconds: 3600,
                                                           notFoundSeconds: 60))
        #expect(configuration.webhookSecret == nil)
        #expect(configuration.exportRefreshSeconds == 3600)
    }

    @Test func exportRefreshComesFromItsVariable() throws {
        #expect(try configuration(["EXPORT_REFRESH_SECONDS": "120"]).exportRefreshSeconds == 120)
    }

    @Test func cacheWindowsComeFromTheirVariables() throws {
        let windows = try configuration(["CACHE_TTL_SECONDS": "30", "CACHE_STALE_WHILE_REVALIDATE_SECONDS": "0",
                                         "CACHE_STALE_IF_ERROR_SECONDS": "7200", "CACHE_NOT_FOUND_SECONDS": "5"]).cacheWindows
        #expect(windows == CacheWindows(ttlSeconds: 30, staleWhileRevalidateSeconds: 0, staleIfErrorSeconds: 7200, notFoundSeconds: 5))
    }

    @Test(arguments: [("CACHE_TTL_SECONDS", "0"), ("CACHE_STALE_WHILE_REVALIDATE_SECONDS", "-1"), ("CACHE_STALE_IF_ERROR_SECONDS", "1h"),
                      ("CACHE_NOT_FOUND_SECONDS", "99999999999999999999"), ("EXPORT_REFRESH_SECONDS", "0"),
                      ("EXPORT_REFRESH_SECONDS", "hourly")])
    func aBadWindowNamesItsVariable(_ variable: String, _ value: String) {
        #expect { try configuration([variable: value]) } throws: { ($0 as? ConfigurationError)?.variable == variable }
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

@Suite struct TLSConfigurationTests {
    let valid = ["VOUCHERIFY_APP_ID": "id", "VOUCHERIFY_APP_TOKEN": "token-value"]

    func configuration(_ overrides: [String: String]) throws(ConfigurationError) -> ServiceConfiguration {
        try ServiceConfiguration.fromEnvironment(valid.merging(overrides) { _, new in new }, cores: 2)
    }

    func failure(_ overrides: [String: String]) -> ConfigurationError? {
        do {
            _ = try configuration(overrides)
            return nil
        } catch {
            return error
        }
    }

    @Test func offWithoutTheVariables() throws {
        #expect(try configuration([:]).server.tls == nil)
    }

    @Test func bothFilesTurnTLSOn() throws {
        let directory = try makeTemporaryDirectory()
        let certificate = try TestCertificate(in: directory, name: "a")
        let tls = try #require(try configuration(["TLS_CERT_FILE": certificate.certificateFile, "TLS_KEY_FILE": certificate.keyFile]).server.tls)
        #expect(tls.certificateFile == certificate.certificateFile)
        #expect(tls.keyFile == certificate.keyFile)
    }

    @Test func onlyOneSetNamesTheMissingOne() {
        #expect(failure(["TLS_CERT_FILE": "/tmp/cert.pem"])?.variable == "TLS_KEY_FILE")
        #expect(failure(["TLS_KEY_FILE": "/tmp/key.pem"])?.variable == "TLS_CERT_FILE")
    }

    @Test func aBadFileNamesItsVariable() throws {
        let directory = try makeTemporaryDirectory()
        let a = try TestCertificate(in: directory, name: "a")
        let b = try TestCertificate(in: directory, name: "b")
        let garbage = directory + "/garbage.pem"
        #expect(FileManager.default.createFile(atPath: garbage, contents: Data("not PEM\n".utf8)))
        #expect(failure(["TLS_CERT_FILE": directory + "/missing.pem", "TLS_KEY_FILE": a.keyFile])?.variable == "TLS_CERT_FILE")
        #expect(failure(["TLS_CERT_FILE": garbage, "TLS_KEY_FILE": a.keyFile])?.variable == "TLS_CERT_FILE")
        #expect(failure(["TLS_CERT_FILE": a.certificateFile, "TLS_KEY_FILE": garbage])?.variable == "TLS_KEY_FILE")
        // A well-formed key of another certificate.
        let mismatch = failure(["TLS_CERT_FILE": a.certificateFile, "TLS_KEY_FILE": b.keyFile])
        #expect(mismatch?.variable == "TLS_KEY_FILE")
        #expect(mismatch?.description.contains(b.keyFile) == true)
    }
}
