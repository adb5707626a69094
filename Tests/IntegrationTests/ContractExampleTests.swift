import Foundation
import Testing

/// proto-json/examples work as written against a stack started as scripts/run.sh starts it (the
/// fake with `--contract-examples`): the example requests get the example responses, but for what
/// depends on when Voucherify was read.
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
