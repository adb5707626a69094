import Testing
@testable import WarmJob

@Suite struct WarmConfigurationTests {
    private func arguments(_ change: (inout WarmConfiguration.Arguments) -> Void = { _ in }) -> WarmConfiguration.Arguments {
        var arguments = WarmConfiguration.Arguments()
        arguments.campaign = "camp_1"
        arguments.membersFile = "members.csv"
        change(&arguments)
        return arguments
    }

    private func usageError(_ change: (inout WarmConfiguration.Arguments) -> Void) -> String? {
        do {
            _ = try WarmConfiguration(arguments(change))
            return nil
        } catch {
            return error.description
        }
    }

    @Test func defaults() throws {
        let configuration = try WarmConfiguration(arguments())
        #expect(configuration.service == "http://127.0.0.1:8080")
        #expect(!configuration.usesTLS)
        #expect(configuration.members == .file("members.csv"))
        #expect(configuration.batchSize == 100)
        #expect(configuration.concurrency == 2)
        #expect(configuration.timeoutMilliseconds == 3_600_000)
        #expect(configuration.progressIntervalMilliseconds == 5_000)
        #expect(configuration.failedOutPath == nil)
        #expect(!configuration.force)
    }

    @Test func valuesAsGiven() throws {
        let configuration = try WarmConfiguration(arguments {
            $0.service = "https://points.internal:8443/"
            $0.batch = "1000"
            $0.concurrency = "32"
            $0.timeout = "90.5"
            $0.progressInterval = "0.2"
            $0.failedOut = "failed.csv"
            $0.force = true
        })
        #expect(configuration.service == "https://points.internal:8443")
        #expect(configuration.usesTLS)
        #expect(configuration.batchSize == 1000)
        #expect(configuration.concurrency == 32)
        #expect(configuration.timeoutMilliseconds == 90_500)
        #expect(configuration.progressIntervalMilliseconds == 200)
        #expect(configuration.failedOutPath == "failed.csv")
        #expect(configuration.force)
    }

    @Test func standardInputByDashEitherWay() throws {
        #expect(try WarmConfiguration(arguments { $0.membersFile = "-" }).members == .standardInput)
        #expect(try WarmConfiguration(arguments { $0.membersFile = nil; $0.standardInput = true }).members == .standardInput)
        #expect(usageError { $0.standardInput = true } == "give either --members-file or -, not both")
    }

    @Test func everyBadValueNamesItsFlag() {
        #expect(usageError { $0.batch = "0" }?.hasPrefix("--batch must be") == true)
        #expect(usageError { $0.batch = "1001" }?.hasPrefix("--batch must be") == true)
        #expect(usageError { $0.batch = "ten" }?.hasPrefix("--batch must be") == true)
        #expect(usageError { $0.concurrency = "33" }?.hasPrefix("--concurrency must be") == true)
        #expect(usageError { $0.timeout = "0" }?.hasPrefix("--timeout must be") == true)
        #expect(usageError { $0.timeout = "nan" }?.hasPrefix("--timeout must be") == true)
        #expect(usageError { $0.progressInterval = "-1" }?.hasPrefix("--progress-interval must be") == true)
        #expect(usageError { $0.service = "ftp://host" }?.hasPrefix("--service must be") == true)
        #expect(usageError { $0.service = "http://" }?.hasPrefix("--service must be") == true)
        #expect(usageError { $0.service = "http://host?x=1" }?.hasPrefix("--service must be") == true)
        #expect(usageError { $0.campaign = " " }?.hasPrefix("--campaign is required") == true)
        #expect(usageError { $0.campaign = String(repeating: "c", count: 513) }?.hasPrefix("--campaign is longer") == true)
        #expect(usageError { $0.membersFile = nil }?.hasPrefix("--members-file FILE") == true)
        #expect(usageError { $0.failedOut = "" } == "--failed-out must name a file")
        #expect(usageError { $0.unexpected = ["--bogus"] } == "unexpected argument --bogus")
    }

    @Test func caCertificateForAnHTTPSService() throws {
        let configuration = try WarmConfiguration(arguments {
            $0.service = "https://points.internal:8443"
            $0.caCertificate = "/etc/ca.pem"
        })
        #expect(configuration.usesTLS)
        #expect(configuration.caCertificatePath == "/etc/ca.pem")
        #expect(try WarmConfiguration(arguments()).caCertificatePath == nil)
    }

    @Test func caCertificateNeedsHTTPSAndAFile() {
        #expect(usageError { $0.caCertificate = "/etc/ca.pem" }?.contains("--cacert") == true)
        #expect(usageError {
            $0.service = "https://points.internal"
            $0.caCertificate = ""
        }?.contains("--cacert") == true)
    }
}
