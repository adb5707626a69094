import APIMessages
import Codecs
import ExpiryDomain
import RPC
import SwiftProtobuf
import Testing
import TestSupport
@testable import PointsExpiryServer

@Suite struct RequestDecodingTests {
    func request(_ json: String) throws -> GetMemberExpirationRequest {
        try decodeRequest(json)
    }

    func failure(_ json: String) -> String? {
        refusal(json, as: GetMemberExpirationRequest.self)
    }

    @Test func acceptsLowerCamelCase() throws {
        let r = try request(#"{"campaign":"camp_1","member":"CARD-1","expiringBefore":"2026-12-01"}"#)
        #expect(r == GetMemberExpirationRequest(campaign: "camp_1", member: "CARD-1", expiringBefore: try day("2026-12-01")))
    }

    @Test func acceptsSnakeCase() throws {
        let r = try request(#"{"campaign":"Loyalty Campaign","member":"CARD-1","expiring_before":"2028-02-29"}"#)
        #expect(r.campaign == "Loyalty Campaign")
        #expect(r.expiringBefore == (try day("2028-02-29")))
    }

    @Test func nullMeansUnset() throws {
        let r = try request(#"{"campaign":"c","member":"m","expiringBefore":null}"#)
        #expect(r.expiringBefore == nil)
        #expect(failure(#"{"campaign":null,"member":"m"}"#) == "campaign is required")
    }

    @Test func ignoresUnknownFields() throws {
        let r = try request(#"{"campaign":"c","member":"m","future":{"x":[1,2]},"flag":true}"#)
        #expect(r == GetMemberExpirationRequest(campaign: "c", member: "m", expiringBefore: nil))
    }

    @Test func requiresNonEmptyCampaignAndMember() throws {
        #expect(failure(#"{"member":"m"}"#) == "campaign is required")
        #expect(failure(#"{"campaign":"","member":"m"}"#) == "campaign is required")
        #expect(failure(#"{"campaign":"c"}"#) == "member is required")
        #expect(failure(#"{"campaign":"c","member":""}"#) == "member is required")
        #expect(failure("") == "campaign is required")
    }

    @Test func limitsIdentifierLength() throws {
        let ok = String(repeating: "ż", count: 256) // 512 UTF-8 bytes
        #expect(try request(#"{"campaign":"\#(ok)","member":"m"}"#).campaign == ok)
        let message = failure(#"{"campaign":"c","member":"\#(ok)x"}"#)
        #expect(message?.contains("member") == true)
        #expect(message?.contains("512") == true)
    }

    @Test(arguments: [#"{"campaign":1,"member":"m"}"#, #"{"campaign":"c","member":["m"]}"#,
                      #"{"campaign":"c","member":"m","expiringBefore":20260101}"#, #"{"campaign":{},"member":"m"}"#,
                      "[]", "\"c\"", "42", "true", #"{"campaign":"#, #"{"campaign":"c"} x"#])
    func malformedMessagesSayTheShapeExpected(_ json: String) throws {
        let message = try #require(failure(json))
        #expect(message.hasPrefix("the request is not a valid JSON pointsexpiry.v1.GetMemberExpirationRequest: "))
        #expect(message.hasSuffix(GetMemberExpirationRequest.jsonShape))
    }

    /// The hit path reads JSON by hand; the generated decoder is the reference. Both must accept
    /// the same messages with the same result, and refuse the same ones.
    @Test(arguments: [
        #"{"campaign":"camp_1","member":"CARD-1","expiringBefore":"2026-12-01"}"#,
        #"{"campaign":"c","member":"m","expiring_before":"2028-02-29"}"#,
        #"{"campaign":"c","member":"m","expiring_before":"2026-01-01","expiringBefore":"2026-02-01"}"#,
        #"{"campaign":"first","member":"m","campaign":"second"}"#,
        #"{"campaign":"c","member":"m","expiringBefore":null}"#, #"{"campaign":null,"member":"m"}"#,
        #"{"campaign":"c","member":"m","future":{"x":[1,2]},"flag":true,"n":null}"#,
        #"{"campaign":"caf\u00e9 \"q\" \\ \/","member":"\ud83d\ude00"}"#, #" { "campaign" : "c" , "member" : "m" } "#,
        #"{"member":"m"}"#, #"{"campaign":"","member":"m"}"#, #"{}"#,
        #"{"campaign":1,"member":"m"}"#, #"{"campaign":"c","member":["m"]}"#, #"{"campaign":"c","member":"m","expiringBefore":20260101}"#,
        #"{"campaign":"c","member":"m","expiringBefore":"2026-02-30"}"#,
        "[]", "\"c\"", "null", "42", "true", #"{"campaign":"#, #"{"campaign":"c"} x"#, #"{"campaign":"c",}"#, #"{'campaign':'c'}"#,
        #"{"campaign":"\ud800","member":"m"}"#, #"{"campaign":"c\u0000","member":"m"}"#,
        // Unknown fields, which the generated decoder skips loosely: the hand-written path leaves them to it.
        #"{"campaign":"c","member":"m","x":"\q"}"#, #"{"campaign":"c","member":"m","x":"\ud800"}"#,
        "{\"campaign\":\"c\",\"member\":\"m\",\"x\":\"\u{01}\"}", #"{"campaign":"c","member":"m","x":1e999}"#,
        #"{"campaign":"c","member":"m","x":"# + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}",
        "{\"campaign\":\"c\tc\",\"member\":\"m\"}", "{\"campaign\":\"c\u{01}\",\"member\":\"m\"}",
        #"{"campaign":"c","member":"m","expiringBefore":"2026-12-01","expiringBefore":null}"#,
        // Shapes at the edge of the in-place reader (plain strings and null under known keys).
        #"{"campaign":"c","member":"m","member":null}"#, "\n{\"campaign\":\"c\",\r\n\t\"member\":\"m\"}\n",
        #"{"campaign" "c","member":"m"}"#, #"{"campaign":"c" "member":"m"}"#, #"{"campaign":"c",,"member":"m"}"#, #"{,}"#,
        #"{"campaign":nul}"#, #"{"campaign":nullx,"member":"m"}"#, #"{"campaign":"c","member":"m"}}"#, #"{"campaign":"c","member":"m""#,
        #"{"campaign":"café","member":"m"}"#, #"{"campaign":"c","member":"m","expiring_before":"2026-01-01"}"#,
        #"{"campaign":".","member":"m"}"#, #"{"Campaign":"c","member":"m"}"#,
    ])
    func theHandWrittenDecoderAgreesWithTheGeneratedOne(_ json: String) {
        let message = RPCMessage(codec: .json, bytes: Array(json.utf8))
        let handWritten = Result { () throws(RPCError) in try GetMemberExpirationRequest.decode(message) }
        let generated = Result { () throws(RPCError) in try GetMemberExpirationRequest.decodeGenerated(message) }
        switch (handWritten, generated) {
        case (.success(let a), .success(let b)): #expect(a == b)
        case (.failure(let a), .failure(let b)): #expect(a == b)
        default: Issue.record("hand-written \(handWritten) but generated \(generated)")
        }
    }

    @Test(arguments: ["2026-02-30", "2026-13-01", "26-01-01", "2026-1-1", "", "tomorrow", "2026-01-01T00:00:00Z"])
    func rejectsBadDates(_ date: String) throws {
        let message = failure(#"{"campaign":"c","member":"m","expiring_before":"\#(date)"}"#)
        #expect(message == "expiring_before must be a real date written YYYY-MM-DD")
    }

    /// Both codecs go through the generated type, so the same message decodes to the same request.
    @Test func theBinaryCodecDecodesTheSameRequest() throws {
        var message = Pointsexpiry_V1_GetMemberExpirationRequest()
        message.campaign = "camp_1"
        message.member = "CARD-1"
        message.expiringBefore = "2026-12-01"
        let binary: GetMemberExpirationRequest = try decodeRequest(try message.serializedBytes(), codec: .proto)
        let json: GetMemberExpirationRequest = try decodeRequest(#"{"campaign":"camp_1","member":"CARD-1","expiringBefore":"2026-12-01"}"#)
        #expect(binary == json)
        let garbage = rpcError { () throws(RPCError) in try decodeRequest([0xFF, 0xFF], codec: .proto, as: GetMemberExpirationRequest.self) }
        #expect(garbage?.code == .invalidArgument)
        #expect(garbage?.message.hasPrefix("the request is not a valid binary pointsexpiry.v1.GetMemberExpirationRequest") == true)
    }
}

@Suite struct ResponseEncodingTests {
    func example() throws -> MemberExpiration {
        MemberExpiration(
            campaign: "Loyalty Campaign", member: "CARD-1",
            buckets: [
                bucket("lopb_1", 100, try day("2026-11-22"), createdAt: try instant("2026-01-01T00:00:00Z")),
                bucket("lopb_2", 50, try day("2026-11-22"), status: "active",
                       createdAt: try instant("2026-01-01T00:00:00Z"), updatedAt: try instant("2026-02-01T10:00:00Z")),
                bucket("lopb_3", 30, nil),
            ],
            fetchedAt: try instant("2026-11-20T08:30:00Z"))
    }

    static let expectedPrefix = #"{"campaign":"Loyalty Campaign","campaignId":"camp_1","member":"CARD-1","voucherId":"v_1","#
        + #""activePoints":"180","expiringPoints":"150","nonExpiringPoints":"30","#
        + #""nextExpiration":{"date":"2026-11-22","points":"150","buckets":2},"#
        + #""expirations":[{"date":"2026-11-22","points":"150","buckets":2}],"#
        + #""buckets":[{"id":"lopb_1","points":"100","status":"ACTIVE","expiresAt":"2026-11-22","createdAt":"2026-01-01T00:00:00.000Z"},"#
        + #"{"id":"lopb_2","points":"50","status":"active","expiresAt":"2026-11-22","createdAt":"2026-01-01T00:00:00.000Z","updatedAt":"2026-02-01T10:00:00.000Z"},"#
        + #"{"id":"lopb_3","points":"30","status":"ACTIVE","expiresAt":""}],"#
        + #""fetchedAt":"2026-11-20T08:30:00.000Z""#

    @Test func encodesTheExactContractShape() throws {
        let body = try example().responseBody(.json, expiringBefore: nil)
        #expect(text(body) == Self.expectedPrefix + #","pointsExpiringBefore":"0"}"#)
    }

    @Test func fillsPointsExpiringBefore() throws {
        let body = try example().responseBody(.json, expiringBefore: try day("2026-11-23"))
        #expect(text(body) == Self.expectedPrefix + #","pointsExpiringBefore":"150"}"#)
    }

    @Test func emitsScalarsEvenWhenEmptyAndOmitsNextExpiration() throws {
        let empty = MemberExpiration(campaign: "c", member: "m", buckets: [], fetchedAt: Timestamp(millisecondsSince1970: 0))
        #expect(text(try empty.responseBody(.json, expiringBefore: nil)) ==
            #"{"campaign":"c","campaignId":"","member":"m","voucherId":"","activePoints":"0","expiringPoints":"0","nonExpiringPoints":"0","expirations":[],"buckets":[],"fetchedAt":"1970-01-01T00:00:00.000Z","pointsExpiringBefore":"0"}"#)
    }

    @Test func escapesStringsAndEncodesInt64AsStrings() throws {
        let m = MemberExpiration(campaign: "Q\"1\"\n", member: "ż/😀", buckets: [bucket("b\\1", Int64.max, nil)],
                                 fetchedAt: Timestamp(millisecondsSince1970: 0))
        let parsed = try #require(try JSONParser.parse(try m.responseBody(.json, expiringBefore: nil)).objectValue)
        #expect(parsed["campaign"] == .string("Q\"1\"\n"))
        #expect(parsed["member"] == .string("ż/😀"))
        #expect(parsed["activePoints"] == .string("9223372036854775807"))
        let firstBucket = try #require(parsed["buckets"]?.arrayValue?.first?.objectValue)
        #expect(firstBucket["id"] == .string("b\\1"))
        #expect(firstBucket["points"] == .string("9223372036854775807"))
        #expect(firstBucket["expiresAt"] == .string(""))
        #expect(firstBucket["createdAt"] == nil)
        #expect(parsed.members.last?.key == "pointsExpiringBefore")
    }
}

@Suite struct CachedAnswerTests {
    func example() throws -> MemberExpiration {
        try ResponseEncodingTests().example()
    }

    @Test func roundTripsThroughItsSerializedForm() throws {
        let answer = CachedAnswer(try example(), freshUntil: try instant("2026-11-20T08:34:00Z"), notAfter: try instant("2026-11-20T08:35:00Z"))
        let bytes = answer.serialized()
        #expect(Array(bytes.prefix(3)) == Array("pe2".utf8))
        let decoded = try CachedAnswer(serialized: bytes)
        #expect(decoded == answer)
        #expect(decoded.fetchedAt == (try instant("2026-11-20T08:30:00Z")))
        #expect(decoded.freshUntil == (try instant("2026-11-20T08:34:00Z")))
        #expect(decoded.notAfter == (try instant("2026-11-20T08:35:00Z")))
        #expect(decoded.expirations == (try example()).expirations)
    }

    @Test func roundTripsManyDatesAndExtremes() throws {
        let buckets = (0..<50).map { i in bucket("b\(i)", Int64(i + 1) * 1_000_000_007, CalendarDate(daysSince1970: 20_000 + i * 7)) }
            + [bucket("old", 1, try day("0000-01-01")), bucket("late", Int64.max, try day("9999-12-31"))]
        let m = MemberExpiration(campaign: "c", member: "m", buckets: buckets, fetchedAt: Timestamp(millisecondsSince1970: -5))
        #expect(m.expirations.count == 52)
        let answer = CachedAnswer(m, freshUntil: Timestamp(millisecondsSince1970: .min), notAfter: Timestamp(millisecondsSince1970: Int64.max))
        #expect(try CachedAnswer(serialized: answer.serialized()) == answer)
    }

    @Test func responseBodyEqualsProtoJSON() throws {
        let m = try example()
        let decoded = try CachedAnswer(serialized: CachedAnswer(m, freshUntil: m.fetchedAt, notAfter: m.fetchedAt.adding(milliseconds: 300_000)).serialized())
        for limit in [nil, try day("2026-11-22"), try day("2026-11-23"), try day("2000-01-01")] as [CalendarDate?] {
            #expect(try decoded.responseBody(.json, expiringBefore: limit) == m.responseBody(.json, expiringBefore: limit))
        }
        #expect(text(try decoded.responseBody(.json, expiringBefore: try day("2026-11-23"))).hasSuffix(#","pointsExpiringBefore":"150"}"#))
    }

    @Test func decodedPrefixIsASliceOfTheRecordNotACopy() throws {
        let answer = CachedAnswer(try example(), freshUntil: Timestamp(millisecondsSince1970: 6), notAfter: Timestamp(millisecondsSince1970: 7))
        let record = answer.serialized()
        let decoded = try CachedAnswer(serialized: record)
        #expect(decoded == answer)
        // Same storage, not equal contents: the prefix's first byte lives inside the record's buffer.
        let recordStart = record.withUnsafeBufferPointer { $0.baseAddress! }
        let prefixStart = decoded.bodyPrefix.withUnsafeBufferPointer { $0.baseAddress! }
        #expect(prefixStart == recordStart + decoded.bodyPrefix.startIndex)
        #expect(decoded.bodyPrefix.endIndex == record.endIndex)
    }

    /// The hand-written JSON, the transcoded binary form and the generated message built from the
    /// domain value are one message, for every per-request tail.
    @Test func bothCodecsCarryTheSameMessage() throws {
        let m = try example()
        let decoded = try CachedAnswer(serialized: CachedAnswer(m, freshUntil: m.fetchedAt, notAfter: m.fetchedAt).serialized())
        for limit in [nil, try day("2026-11-22"), try day("2026-11-23")] as [CalendarDate?] {
            var expected = m.protoMessage
            expected.pointsExpiringBefore = m.expirations.points(before: limit)
            let fromJSON = try Pointsexpiry_V1_MemberExpiration(jsonUTF8Bytes: try decoded.responseBody(.json, expiringBefore: limit))
            let fromProto = try Pointsexpiry_V1_MemberExpiration(serializedBytes: try decoded.responseBody(.proto, expiringBefore: limit))
            #expect(fromJSON == expected)
            #expect(fromProto == expected)
        }
        let extremes = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("late", Int64.max, try day("9999-12-30"))],
                                        fetchedAt: Timestamp(millisecondsSince1970: -1))
        var expected = extremes.protoMessage
        expected.pointsExpiringBefore = Int64.max
        #expect(try Pointsexpiry_V1_MemberExpiration(serializedBytes: try extremes.responseBody(.proto, expiringBefore: try day("9999-12-31"))) == expected)
        #expect(expected.fetchedAt.seconds == -1 && expected.fetchedAt.nanos == 999_000_000)
    }

    @Test func bodyPrefixStopsBeforeTheRequestSpecificField() throws {
        let answer = CachedAnswer(try example(), freshUntil: Timestamp(millisecondsSince1970: 0), notAfter: Timestamp(millisecondsSince1970: 0))
        #expect(text(Array(answer.bodyPrefix)) == ResponseEncodingTests.expectedPrefix)
    }

    @Test func rejectsGarbage() throws {
        let good = CachedAnswer(try example(), freshUntil: Timestamp(millisecondsSince1970: 0), notAfter: Timestamp(millisecondsSince1970: 0)).serialized()
        var wrongVersion = good
        wrongVersion[2] = UInt8(ascii: "1")
        var badCount = good
        badCount[27...30] = [0xFF, 0xFF, 0xFF, 0xFF]
        var badDate = good
        badDate[31...34] = [0x7F, 0xFF, 0xFF, 0xFF]
        let candidates: [[UInt8]] = [
            [], Array("pe".utf8), Array("pe2".utf8), Array("{\"json\":true}".utf8), wrongVersion, badCount, badDate,
            Array(good.dropLast()), good + [0x20], Array(good.prefix(30)),
        ]
        for candidate in candidates {
            #expect(throws: CachedAnswerFormatError.self) { try CachedAnswer(serialized: candidate) }
        }
    }
}

@Suite struct CacheEntryTests {
    @Test func aNotFoundRoundTripsAndKeepsItsSubject() throws {
        for subject in [NotFoundSubject.campaign, .member] {
            let entry = CacheEntry.notFound(CachedNotFound(fetchedAt: try instant("2026-11-22T10:00:00Z"),
                                                           freshUntil: try instant("2026-11-22T10:01:00Z"), subject: subject))
            #expect(try CacheEntry(serialized: entry.serialized()) == entry)
        }
    }

    @Test func anAnswerRoundTripsThroughTheEntry() throws {
        let m = try ResponseEncodingTests().example()
        let entry = CacheEntry.answer(CachedAnswer(m, freshUntil: m.fetchedAt.adding(milliseconds: 1), notAfter: m.fetchedAt.adding(milliseconds: 2)))
        #expect(try CacheEntry(serialized: entry.serialized()) == entry)
    }

    /// The lease script compares these 8 bytes to tell a new fill from the record already seen.
    @Test func theStampIsFetchedAtInEveryKind() throws {
        let fetched = Timestamp(millisecondsSince1970: 0x0102_0304_0506_0708)
        let notFound = CacheEntry.notFound(CachedNotFound(fetchedAt: fetched, freshUntil: fetched, subject: .member)).serialized()
        let m = MemberExpiration(campaign: "c", member: "m", buckets: [], fetchedAt: fetched)
        let answer = CacheEntry.answer(CachedAnswer(m, freshUntil: fetched, notAfter: fetched)).serialized()
        #expect(Array(CacheEntry.stamp(of: notFound)) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(CacheEntry.stamp(of: answer)) == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test func rejectsABrokenNotFound() throws {
        let good = CachedNotFound(fetchedAt: Timestamp(millisecondsSince1970: 0), freshUntil: Timestamp(millisecondsSince1970: 0),
                                  subject: .campaign).serialized()
        var badSubject = good
        badSubject[19] = UInt8(ascii: "x")
        for candidate in [Array(good.dropLast()), good + [0], badSubject] {
            #expect(throws: CachedAnswerFormatError.self) { try CacheEntry(serialized: candidate) }
        }
    }
}

@Suite struct BinaryAnswersTests {
    func answer(points: Int64, fetched: String = "2026-11-20T08:30:00Z") throws -> CachedAnswer {
        let m = MemberExpiration(campaign: "c", member: "m", buckets: [bucket("lopb_1", points, try day("2026-12-31"))],
                                 fetchedAt: try instant(fetched))
        return try CachedAnswer(serialized: CachedAnswer(m, freshUntil: m.fetchedAt, notAfter: m.fetchedAt).serialized())
    }

    /// The kept binary form answers exactly as a fresh transcode would, for every tail.
    @Test func answersAsATranscodeWouldAndKeepsItsWork() throws {
        let binary = BinaryAnswers()
        let cached = try answer(points: 10)
        for limit in [nil, try day("2027-01-01"), try day("2026-01-01")] as [CalendarDate?] {
            let body = try binary.body(cached, campaign: "c", member: "m", expiringBefore: limit)
            #expect(body == (try cached.responseBody(.proto, expiringBefore: limit)))
        }
        #expect(binary.count == 1)
    }

    /// A record that changed in Redis (refilled, or written after an invalidation) never gets the
    /// binary form of the one before.
    @Test func aChangedRecordIsTranscodedAgain() throws {
        let binary = BinaryAnswers()
        _ = try binary.body(try answer(points: 10), campaign: "c", member: "m", expiringBefore: nil)
        let refilled = try answer(points: 25, fetched: "2026-11-20T09:30:00Z")
        let body = try binary.body(refilled, campaign: "c", member: "m", expiringBefore: nil)
        let message = try Pointsexpiry_V1_MemberExpiration(serializedBytes: body)
        #expect(message.activePoints == 25)
        #expect(binary.count == 1)
    }

    @Test func staysWithinItsBytes() throws {
        let binary = BinaryAnswers(maxBytes: 4096)
        let cached = try answer(points: 10)
        for index in 0..<20 { _ = try binary.body(cached, campaign: "c", member: "m\(index)", expiringBefore: nil) }
        #expect(binary.count < 20 && binary.count > 0)
    }
}

