import Foundation
import Testing

/// proto-json/examples work as written against a stack started as scripts/run.sh starts it (the
/// fake with `--contract-examples`): the example requests get the example responses, but for what
/// depends on when Voucherify was read. And every curl command in proto-json/README.md and
/// docker/README.md answers 200 against a stack started as docker/compose.yaml starts it, as
/// written but for the host and port.
@Suite(.serialized) struct ContractExampleTests {
    private static let examples = PackageFiles.url("proto-json/examples")

    @Test func getMemberExpirationExampleAnswersTheExampleResponse() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--contract-examples"])
        let answer = try service.get(try Self.example("get_member_expiration.request.json"))
        #expect(answer.status == 200, "\(answer.text)")
        let expected = try Self.exampleJSON("get_member_expiration.response.json")
        #expect(Self.fetchTimeIndependent(answer.json) == Self.fetchTimeIndependent(expected),
                "got \(answer.text)")
    }

    @Test func batchExampleAnswersTheExampleResults() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--contract-examples"])
        let answer = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/BatchGetMemberExpirations",
                                            body: Data(try Self.example("batch_get_member_expirations.request.json").utf8),
                                            headers: ["content-type: application/json"])
        #expect(answer.status == 200, "\(answer.text)")
        let results = answer.json["results"] as? [[String: Any]] ?? []
        let expected = try Self.exampleJSON("batch_get_member_expirations.response.json")["results"] as? [[String: Any]] ?? []
        try #require(results.count == 2 && expected.count == 2, "got \(answer.text)")
        #expect(results[0]["member"] as? String == expected[0]["member"] as? String)
        #expect(Self.fetchTimeIndependent(results[0]["expiration"] as? [String: Any] ?? [:])
                == Self.fetchTimeIndependent(expected[0]["expiration"] as? [String: Any] ?? [:]), "got \(answer.text)")
        // The error's wording is the service's; the example fixes who failed and with which code.
        #expect(results[1]["member"] as? String == expected[1]["member"] as? String)
        #expect((results[1]["error"] as? [String: Any])?["code"] as? String == "not_found", "got \(answer.text)")
    }

    /// The example campaign's export, once the first one is done, gives the example's numbers
    /// (`generatedAt` is when the export was asked for).
    @Test func campaignExampleAnswersTheExampleResponse() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--contract-examples", "--export-delay-ms", "100"])
        let path = "/pointsexpiry.v1.PointsExpiryService/GetCampaignExpiration"
        let request = Data(try Self.example("get_campaign_expiration.request.json").utf8)
        var answer: HTTPResult?
        try waitUntil("the example campaign is exported") {
            answer = try CurlClient.request("POST", service.baseURL + path, body: request, headers: ["content-type: application/json"])
            return answer?.status == 200
        }
        var got = try #require(answer).json, expected = try Self.exampleJSON("get_campaign_expiration.response.json")
        #expect((got.removeValue(forKey: "generatedAt") as? String)?.hasSuffix("Z") == true)
        expected.removeValue(forKey: "generatedAt")
        #expect(Self.sorted(got) == Self.sorted(expected), "got \(answer?.text ?? "")")
    }

    /// `invalidated: true` says a cached answer was dropped: the example's member is read first.
    @Test func invalidateExampleAnswersTheExampleResponseOnceTheMemberIsCached() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--contract-examples"])
        let request = try Self.exampleJSON("invalidate_member.request.json")
        let member = try #require(request["member"] as? String), campaign = try #require(request["campaign"] as? String)
        #expect(try service.get(member: member, campaign: campaign).status == 200)
        try service.waitUntilCached(member: member, campaign: campaign)
        let answer = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember",
                                            body: Data(try Self.example("invalidate_member.request.json").utf8),
                                            headers: ["content-type: application/json"])
        #expect(answer.status == 200, "\(answer.text)")
        #expect(Self.sorted(answer.json) == Self.sorted(try Self.exampleJSON("invalidate_member.response.json")), "got \(answer.text)")
    }

    /// How many members end up warmed, fresh or deferred depends on the cache and the budget; the
    /// example fixes the request's shape and that the unknown card fails as not_found.
    @Test func warmExampleAnswersWithTheExamplesShape() throws {
        let service = try ServiceUnderTest(fakeArguments: ["--contract-examples"])
        let answer = try CurlClient.request("POST", service.baseURL + "/pointsexpiry.v1.PointsExpiryService/WarmMembers",
                                            body: Data(try Self.example("warm_members.request.json").utf8),
                                            headers: ["content-type: application/json"])
        #expect(answer.status == 200, "\(answer.text)")
        let expected = try Self.exampleJSON("warm_members.response.json")
        #expect(answer.json["requested"] as? Int == expected["requested"] as? Int, "got \(answer.text)")
        let failed = answer.json["failed"] as? [[String: Any]] ?? []
        #expect(failed.map { $0["member"] as? String } == [(expected["failed"] as? [[String: Any]])?.first?["member"] as? String], "got \(answer.text)")
        #expect(failed.first?["code"] as? String == "not_found")
    }

    /// The curl commands of the two READMEs' `sh` blocks, run by the shell from the repository root.
    @Test(arguments: ["proto-json/README.md", "docker/README.md"])
    func everyCurlExampleInTheReadmeAnswers200(readme: String) throws {
        // As docker/compose.yaml starts the fake (the campaign and members its examples name).
        let service = try ServiceUnderTest(fakeArguments: [
            "--contract-examples", "--members", "1000", "--campaign-id", "camp_fake_loyalty", "--campaign-name", "Fake Loyalty",
        ])
        let commands = try Self.curlCommands(in: readme)
        #expect(commands.count >= 3, "too few curl examples found in \(readme): \(commands)")
        for command in commands {
            let local = command.replacingOccurrences(of: "http://127.0.0.1:8080", with: service.baseURL)
                .replacingOccurrences(of: "http://127.0.0.1:8090", with: service.fake.baseURL)
            let shell = try ChildProcess("/bin/sh", ["-c", "cd '\(PackageFiles.root.path)' && \(local) --max-time 30 -w '\\n%{http_code}'"])
            _ = try shell.waitForExit()
            let status = shell.outputText.split(separator: "\n").last.map(String.init)
            #expect(status == "200", "\(command)\n→ \(shell.outputText)")
        }
    }

    /// Each `curl …` of the file's ```sh blocks, continuation lines joined; `docker compose … exec
    /// SERVICE curl …` counts as its curl (the port is the fake's, which the test rewrites).
    private static func curlCommands(in readme: String) throws -> [String] {
        let text = try String(contentsOf: PackageFiles.url(readme), encoding: .utf8)
        var commands: [String] = []
        var inShellBlock = false
        var pending = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("```") {
                inShellBlock = !inShellBlock && trimmed == "```sh"
                continue
            }
            guard inShellBlock, !trimmed.hasPrefix("#") else { continue }
            pending += trimmed
            if pending.hasSuffix("\\") {
                pending = String(pending.dropLast()) + " "
                continue
            }
            if let curl = pending.range(of: "curl "), pending.hasPrefix("curl ") || pending.hasPrefix("docker compose ") {
                commands.append(String(pending[curl.lowerBound...]))
            }
            pending = ""
        }
        return commands
    }

    private static func sorted(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private static func example(_ name: String) throws -> String {
        try String(contentsOf: examples.appendingPathComponent(name), encoding: .utf8)
    }

    private static func exampleJSON(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(try example(name).utf8)) as? [String: Any] ?? [:]
    }

    /// A MemberExpiration without `fetchedAt`, as a comparable value (JSON text with sorted keys).
    private static func fetchTimeIndependent(_ expiration: [String: Any]) -> String {
        var rest = expiration
        rest["fetchedAt"] = nil
        let data = (try? JSONSerialization.data(withJSONObject: rest, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
