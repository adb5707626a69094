import Codecs
import ExpiryDomain
import RPC
import Testing
import TestSupport
@testable import PointsExpiryServer

@Suite struct BatchMessagesTests {
    func failure<T>(_ decode: (JSONValue) throws(RPCError) -> T, _ json: String) throws -> String? {
        let value = try parseJSON(json)
        guard let error = rpcError({ () throws(RPCError) in try decode(value) }) else { return nil }
        #expect(error.code == .invalidArgument)
        return error.message
    }

    @Test func distinctMembersKeepFirstAppearanceAndMapEveryPosition() {
        let batch = DistinctMembers(["a", "b", "a", "c", "b"])
        #expect(batch.members == ["a", "b", "c"])
        #expect(batch.positions == [0, 1, 0, 2, 1])
    }

    @Test func batchRequestsAcceptBothSpellingsAndCheckTheList() throws {
        let request = try BatchGetMemberExpirationsRequest(json: parseJSON(#"{"campaign":"c","members":["m1","m1"],"expiring_before":"2027-01-01"}"#))
        #expect(request.members == ["m1", "m1"])
        #expect(request.expiringBefore == (try day("2027-01-01")))
        let decode: (JSONValue) throws(RPCError) -> BatchGetMemberExpirationsRequest = { value throws(RPCError) in
            try BatchGetMemberExpirationsRequest(json: value)
        }
        #expect(try failure(decode, #"{"campaign":"c","members":[]}"#) == "members is empty: list 1 to 100 card codes")
        #expect(try failure(decode, #"{"campaign":"c","members":null}"#) == "members is required: list 1 to 100 card codes")
        #expect(try failure(decode, #"{"campaign":"c","members":[1]}"#) == "members[0] must be a string")
        let tooMany = "[" + (0...100).map { "\"m\($0)\"" }.joined(separator: ",") + "]"
        #expect(try failure(decode, #"{"campaign":"c","members":\#(tooMany)}"#) == "members lists 101 card codes; at most 100 per call")
        // An empty or overlong member is that member's own problem, not the batch's.
        #expect(memberProblem("")?.code == .invalidArgument)
        #expect(memberProblem(String(repeating: "x", count: maxIdentifierBytes + 1))?.message.contains("longer than") == true)
        #expect(memberProblem("CARD-1") == nil)
    }

    @Test func warmRequestsTakeUpTo1000MembersAndABooleanForce() throws {
        let thousand = "[" + (1...1000).map { "\"m\($0)\"" }.joined(separator: ",") + "]"
        let request = try WarmMembersRequest(json: parseJSON(#"{"campaign":"c","members":\#(thousand),"force":true}"#))
        #expect(request.members.count == 1000 && request.force)
        #expect(try WarmMembersRequest(json: parseJSON(#"{"campaign":"c","members":["m"]}"#)).force == false)
        let decode: (JSONValue) throws(RPCError) -> WarmMembersRequest = { value throws(RPCError) in try WarmMembersRequest(json: value) }
        #expect(try failure(decode, #"{"campaign":"c","members":["m"],"force":"yes"}"#) == "force must be true or false")
        #expect(try failure(decode, #"{"members":["m"]}"#) == "campaign is required")
    }

    @Test func warmOutcomesSortFailuresFromWhatIsWorthRetrying() {
        #expect(WarmOutcome(.failure(RPCError(.resourceExhausted, "budget"))) == .deferred)
        #expect(WarmOutcome(.failure(RPCError(.deadlineExceeded, "late"))) == .deferred)
        #expect(WarmOutcome(.failure(RPCError(.notFound, "nope"))) == .failed(RPCError(.notFound, "nope")))
        #expect(WarmOutcome(.failure(RPCError(.unavailable, "down"))) == .failed(RPCError(.unavailable, "down")))
    }

    @Test func warmResponsesCountEveryRequestedPositionOnce() throws {
        let batch = DistinctMembers(["a", "b", "a", "c", "d", "e"])
        let body = warmResponseBody(batch, outcomes: [.warmed, .alreadyFresh, .failed(RPCError(.notFound, "no \"d\"")), .deferred, .warmed])
        #expect(String(decoding: body, as: UTF8.self) == #"{"requested":6,"warmed":3,"alreadyFresh":1,"failed":[{"member":"c","code":"not_found","message":"no \"d\""}],"deferred":["d"]}"#)
        let empty = warmResponseBody(DistinctMembers(["a"]), outcomes: [.alreadyFresh])
        #expect(String(decoding: empty, as: UTF8.self) == #"{"requested":1,"warmed":0,"alreadyFresh":1,"failed":[],"deferred":[]}"#)
    }

    @Test func batchResponsesSpliceEachAnswerIntoEveryPositionThatAskedForIt() throws {
        let fetched = try instant("2026-11-22T10:00:00Z")
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_1", 10, try day("2026-12-31"))], fetchedAt: fetched)
        let answer = CachedAnswer(expiration, freshUntil: fetched, notAfter: fetched)
        let batch = DistinctMembers(["m", "x", "m"])
        let body = batchResponseBody(batch, results: [.success(MemberAnswer(answer: answer, source: .hit, ageSeconds: 42)),
                                                      .failure(RPCError(.notFound, "gone"))],
                                     expiringBefore: try day("2027-01-01"))
        let results = try #require(try JSONParser.parse(body).objectValue?["results"]?.arrayValue)
        #expect(results.count == 3)
        let first = try #require(results[0].objectValue)
        #expect(first["member"] == .string("m"))
        #expect(first["cache"] == .string("hit"))
        #expect(first["age"] == .string("42"))
        #expect(first["expiration"] == (try JSONParser.parse(answer.responseBody(expiringBefore: try day("2027-01-01")))))
        #expect(first["expiration"]?.objectValue?["pointsExpiringBefore"] == .string("10"))
        #expect(results[2] == results[0])
        let failed = try #require(results[1].objectValue)
        #expect(failed["error"] == .object(["code": .string("not_found"), "message": .string("gone")]))
        #expect(failed["expiration"] == nil)
        #expect(failed["cache"] == .string(""))
        #expect(failed["age"] == .string("0"))
    }

    @Test func warmingSlotsServeInOrderAndTurnAwayWaitersPastTheirDeadline() {
        let slots = WarmingSlots(capacity: 2)
        var log: [String] = []
        for (name, deadline) in [("a", 100), ("b", 100), ("c", 50), ("d", 100), ("e", 100)] {
            slots.acquire(deadline: Int64(deadline), now: 10) { log.append("\(name):\($0)") }
        }
        #expect(log == ["a:true", "b:true"])
        slots.release(now: 60) // c's deadline passed while it waited; d is next
        #expect(log == ["a:true", "b:true", "c:false", "d:true"])
        slots.release(now: 70)
        #expect(log.last == "e:true")
        slots.release(now: 80)
        slots.release(now: 80)
        slots.acquire(deadline: 100, now: 90) { log.append("f:\($0)") }
        slots.acquire(deadline: 100, now: 100) { log.append("g:\($0)") }
        #expect(log.suffix(2) == ["f:true", "g:false"])
    }

    @Test func aLongLineOfWaitersThatGiveTheirSlotBackAtOnceIsServedWithoutRecursion() {
        let slots = WarmingSlots(capacity: 1)
        var holderGranted = false
        slots.acquire(deadline: 100, now: 0) { holderGranted = $0 }
        var served = 0
        // Each waiter's read is refused on the spot (a spent budget) and gives its slot back
        // inside its grant: 200,000 nested releases would overflow the stack.
        for _ in 0..<200_000 {
            slots.acquire(deadline: 100, now: 0) { granted in
                if granted { served += 1 }
                slots.release(now: 1)
            }
        }
        #expect(holderGranted)
        slots.release(now: 1)
        #expect(served == 200_000)
        var later = false
        slots.acquire(deadline: 100, now: 2) { later = $0 }
        #expect(later)
    }
}
