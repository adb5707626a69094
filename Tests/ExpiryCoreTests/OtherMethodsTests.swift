import Testing
@testable import ExpiryCore

@Suite struct OtherRequestTests {
    @Test func batchRequest() throws {
        let r = try BatchGetMemberExpirationsRequest(json: parseJSON(#"{"campaign":"c","members":["a","","a"],"expiring_before":"2026-12-01"}"#))
        #expect(r == BatchGetMemberExpirationsRequest(campaign: "c", members: ["a", "", "a"], expiringBefore: try day("2026-12-01")))
        #expect(try r.request(for: "a") == GetMemberExpirationRequest(campaign: "c", member: "a", expiringBefore: try day("2026-12-01")))
        #expect(expiryError { () throws(ExpiryError) in try r.request(for: "") } == .invalidRequest("member is required"))
    }

    @Test func batchRequestLimits() throws {
        func error(_ json: String) throws -> ExpiryError? {
            let value = try parseJSON(json)
            return expiryError { () throws(ExpiryError) in try BatchGetMemberExpirationsRequest(json: value) }
        }
        let hundred = (0..<100).map { "\"m\($0)\"" }.joined(separator: ",")
        #expect(try error(#"{"campaign":"c","members":[\#(hundred)]}"#) == nil)
        #expect(try error(#"{"campaign":"c","members":[\#(hundred),"x"]}"#)
            == .invalidRequest("members must list between 1 and 100 card codes (got 101)"))
        #expect(try error(#"{"campaign":"c","members":[]}"#) == .invalidRequest("members must list between 1 and 100 card codes (got 0)"))
        #expect(try error(#"{"campaign":"c"}"#) == .invalidRequest("members must list between 1 and 100 card codes (got 0)"))
        #expect(try error(#"{"members":["a"]}"#) == .invalidRequest("campaign is required"))
        #expect(try error(#"{"campaign":"c","members":"a"}"#) == .invalidRequest("members must be an array of strings"))
        #expect(try error(#"{"campaign":"c","members":["a",1]}"#) == .invalidRequest("members must be an array of strings"))
    }

    @Test func invalidateRequest() throws {
        #expect(try InvalidateMemberRequest(json: parseJSON(#"{"campaign":"c","member":"m","x":1}"#))
            == InvalidateMemberRequest(campaign: "c", member: "m"))
        let value = try parseJSON(#"{"campaign":"c"}"#)
        #expect(expiryError { () throws(ExpiryError) in try InvalidateMemberRequest(json: value) } == .invalidRequest("member is required"))
    }

    @Test func warmRequest() throws {
        let r = try WarmMembersRequest(json: parseJSON(#"{"campaign":"c","members":["a","b"],"force":true}"#))
        #expect(r == WarmMembersRequest(campaign: "c", members: ["a", "b"], force: true))
        #expect(try WarmMembersRequest(json: parseJSON(#"{"campaign":"c","members":["a"],"force":null}"#)).force == false)
        let thousand = Array(repeating: "\"m\"", count: 1000).joined(separator: ",")
        #expect(try WarmMembersRequest(json: parseJSON(#"{"campaign":"c","members":[\#(thousand)]}"#)).members.count == 1000)
        let tooMany = try parseJSON(#"{"campaign":"c","members":[\#(thousand),"m"]}"#)
        #expect(expiryError { () throws(ExpiryError) in try WarmMembersRequest(json: tooMany) }
            == .invalidRequest("members must list between 1 and 1000 card codes (got 1001)"))
        let badForce = try parseJSON(#"{"campaign":"c","members":["a"],"force":"yes"}"#)
        #expect(expiryError { () throws(ExpiryError) in try WarmMembersRequest(json: badForce) } == .invalidRequest("force must be true or false"))
        #expect(expiryError { () throws(ExpiryError) in try r.request(for: "") } == .invalidRequest("member is required"))
    }
}

@Suite struct OtherResponseTests {
    @Test func batchResponseSplicesBodies() throws {
        let m = MemberExpiration(campaign: "c", member: "a", buckets: [], fetchedAt: Timestamp(millisecondsSince1970: 0))
        let body = m.protoJSON(expiringBefore: nil)
        var writer = BatchResponseWriter()
        #expect(text(writer.finished()) == #"{"results":[]}"#)
        writer.appendExpiration(member: "a", body: body)
        writer.appendError(member: "b\"", error: ConnectError(.notFound, "gone"))
        let bytes = writer.finished()
        #expect(text(bytes) == #"{"results":[{"member":"a","expiration":"# + text(body)
            + #"},{"member":"b\"","error":{"code":"not_found","message":"gone"}}]}"#)
        let results = try #require(try JSONParser.parse(bytes).objectValue?["results"]?.arrayValue)
        #expect(results.count == 2)
        #expect(results[0].objectValue?["expiration"]?.objectValue?["member"] == .string("a"))
    }

    @Test func warmResponse() {
        let response = WarmMembersResponse(requested: 3, warmed: 1, alreadyFresh: 1,
                                           failed: [WarmFailure(member: "x", error: ConnectError(.notFound, "no card"))])
        #expect(text(response.protoJSON())
            == #"{"requested":3,"warmed":1,"alreadyFresh":1,"failed":[{"member":"x","code":"not_found","message":"no card"}]}"#)
        #expect(text(WarmMembersResponse(requested: 0, warmed: 0, alreadyFresh: 0, failed: []).protoJSON())
            == #"{"requested":0,"warmed":0,"alreadyFresh":0,"failed":[]}"#)
    }

    @Test func invalidateResponse() {
        #expect(text(InvalidateMemberResponse.protoJSON(invalidated: true)) == #"{"invalidated":true}"#)
        #expect(text(InvalidateMemberResponse.protoJSON(invalidated: false)) == #"{"invalidated":false}"#)
    }
}
