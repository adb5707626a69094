import APIMessages
import Codecs
import ExpiryDomain
import RPC
import SwiftProtobuf
import Testing
import TestSupport
@testable import PointsExpiryServer

@Suite struct BatchMessagesTests {
    @Test func distinctMembersKeepFirstAppearanceAndMapEveryPosition() {
        let batch = DistinctMembers(["a", "b", "a", "c", "b"])
        #expect(batch.members == ["a", "b", "c"])
        #expect(batch.positions == [0, 1, 0, 2, 1])
    }

    @Test func batchRequestsAcceptBothSpellingsAndCheckTheList() throws {
        let request: BatchGetMemberExpirationsRequest = try decodeRequest(#"{"campaign":"c","members":["m1","m1"],"expiring_before":"2027-01-01"}"#)
        #expect(request.members == ["m1", "m1"])
        #expect(request.expiringBefore == (try day("2027-01-01")))
        let type = BatchGetMemberExpirationsRequest.self
        #expect(refusal(#"{"campaign":"c","members":[]}"#, as: type) == "members is empty or missing: list 1 to 100 card codes")
        #expect(refusal(#"{"campaign":"c","members":null}"#, as: type) == "members is empty or missing: list 1 to 100 card codes")
        #expect(refusal(#"{"campaign":"c","members":[1]}"#, as: type)?.hasPrefix("the request is not a valid JSON") == true)
        let tooMany = "[" + (0...100).map { "\"m\($0)\"" }.joined(separator: ",") + "]"
        #expect(refusal(#"{"campaign":"c","members":\#(tooMany)}"#, as: type) == "members lists 101 card codes; at most 100 per call")
        // An empty or overlong member is that member's own problem, not the batch's.
        #expect(memberProblem("")?.code == .invalidArgument)
        #expect(memberProblem(String(repeating: "x", count: maxIdentifierBytes + 1))?.message.contains("longer than") == true)
        #expect(memberProblem("CARD-1") == nil)
    }

    @Test func warmRequestsTakeUpTo1000MembersAndABooleanForce() throws {
        let thousand = "[" + (1...1000).map { "\"m\($0)\"" }.joined(separator: ",") + "]"
        let request: WarmMembersRequest = try decodeRequest(#"{"campaign":"c","members":\#(thousand),"force":true}"#)
        #expect(request.members.count == 1000 && request.force)
        #expect(try decodeRequest(#"{"campaign":"c","members":["m"]}"#, as: WarmMembersRequest.self).force == false)
        #expect(refusal(#"{"campaign":"c","members":["m"],"force":"yes"}"#, as: WarmMembersRequest.self)?.contains("a bool must be true or false") == true)
        #expect(refusal(#"{"members":["m"]}"#, as: WarmMembersRequest.self) == "campaign is required")
    }

    @Test func warmOutcomesSortFailuresFromWhatIsWorthRetrying() {
        #expect(WarmOutcome(.failure(RPCError(.resourceExhausted, "budget"))) == .deferred)
        #expect(WarmOutcome(.failure(RPCError(.deadlineExceeded, "late"))) == .deferred)
        #expect(WarmOutcome(.failure(RPCError(.notFound, "nope"))) == .failed(RPCError(.notFound, "nope")))
        #expect(WarmOutcome(.failure(RPCError(.unavailable, "down"))) == .failed(RPCError(.unavailable, "down")))
    }

    @Test func warmResponsesCountEveryRequestedPositionOnce() throws {
        let batch = DistinctMembers(["a", "b", "a", "c", "d", "e"])
        let summary = WarmSummary(batch, outcomes: [.warmed, .alreadyFresh, .failed(RPCError(.notFound, "no \"d\"")), .deferred, .warmed])
        let body = summary.responseBody(.json)
        #expect(String(decoding: body, as: UTF8.self) == #"{"requested":6,"warmed":3,"alreadyFresh":1,"failed":[{"member":"c","code":"not_found","message":"no \"d\""}],"deferred":["d"]}"#)
        let empty = WarmSummary(DistinctMembers(["a"]), outcomes: [.alreadyFresh]).responseBody(.json)
        #expect(String(decoding: empty, as: UTF8.self) == #"{"requested":1,"warmed":0,"alreadyFresh":1,"failed":[],"deferred":[]}"#)
        // The hand-written JSON and the binary form are the same generated message.
        for codecs in [summary, WarmSummary(DistinctMembers(["a"]), outcomes: [.alreadyFresh])] {
            let fromJSON = try Pointsexpiry_V1_WarmMembersResponse(jsonUTF8Bytes: codecs.responseBody(.json))
            #expect(fromJSON == (try Pointsexpiry_V1_WarmMembersResponse(serializedBytes: codecs.responseBody(.proto))))
        }
    }

    @Test func batchResponsesSpliceEachAnswerIntoEveryPositionThatAskedForIt() throws {
        let fetched = try instant("2026-11-22T10:00:00Z")
        let expiration = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_1", 10, try day("2026-12-31"))], fetchedAt: fetched)
        let answer = CachedAnswer(expiration, freshUntil: fetched, notAfter: fetched)
        let batch = DistinctMembers(["m", "x", "m"])
        let results: [Result<MemberAnswer, RPCError>] = [.success(MemberAnswer(answer: answer, source: .hit, ageSeconds: 42)),
                                                         .failure(RPCError(.notFound, "gone"))]
        let body = batchResponseJSON(batch, results: results, expiringBefore: try day("2027-01-01"))
        // The hand-written JSON and the binary form are the same generated message.
        let binary = BinaryAnswers()
        let limit = try day("2027-01-01")
        let proto = batchResponseMessage(batch, results: results) { answer, member throws(RPCError) in
            try binary.body(answer, campaign: "c", member: member, expiringBefore: limit)
        }.protoBytes
        #expect(try Pointsexpiry_V1_BatchGetMemberExpirationsResponse(jsonUTF8Bytes: body)
            == Pointsexpiry_V1_BatchGetMemberExpirationsResponse(serializedBytes: proto))
        let decoded = try #require(try JSONParser.parse(body).objectValue?["results"]?.arrayValue)
        #expect(decoded.count == 3)
        let first = try #require(decoded[0].objectValue)
        #expect(first["member"] == .string("m"))
        #expect(first["cache"] == .string("hit"))
        #expect(first["age"] == .string("42"))
        #expect(first["expiration"] == (try JSONParser.parse(try answer.responseBody(.json, expiringBefore: try day("2027-01-01")))))
        #expect(first["expiration"]?.objectValue?["pointsExpiringBefore"] == .string("10"))
        #expect(decoded[2] == decoded[0])
        let failed = try #require(decoded[1].objectValue)
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
