import Testing
import TestSupport
import Codecs
import ExpiryDomain
@testable import Voucherify

@Suite struct WebhookEventTests {
    /// The points_expired data object, shaped as Voucherify documents it.
    static let data = """
        {"voucher":{"id":"v_1","code":"LC-1","campaign":"Zürich Loyalty","campaign_id":"camp_1","holder_id":"cust_1",
                    "loyalty_card":{"points":10,"balance":10}},
         "points":40,"campaign":{"id":"camp_1","name":"Zürich Loyalty"},"customer":null,
         "buckets":[{"id":"lopb_1","status":"ACTIVE","expires_at":"2026-11-21","bucket":{"total_points":40}}],
         "transaction":{"id":"vtx_9","type":"POINTS_EXPIRATION","voucher_id":"v_1","campaign_id":"camp_1"}}
        """

    static func envelope(type: String = WebhookEvent.pointsExpiredType, eventID: String? = "evt_7", data: String = data) -> String {
        let event = eventID.map { #","event":{"id":"\#($0)","type":"\#(type)","entity_id":"v_1"}"# } ?? ""
        return #"{"id":"whs_1","project_id":"proj_1","type":"\#(type)","data":\#(data),"source":{"channel":"API"}\#(event)}"#
    }

    static let expected = PointsExpiredEvent(member: "LC-1", eventID: "evt_7")

    @Test func envelopeNamesMemberAndEventID() throws {
        #expect(try WebhookEvent(payload: parseJSON(Self.envelope())) == .pointsExpired(Self.expected))
    }

    @Test func bareDataObjectIsRecognisedByItsTransaction() throws {
        var expected = Self.expected
        expected.eventID = "vtx_9"
        #expect(try WebhookEvent(payload: parseJSON(Self.data)) == .pointsExpired(expected))
    }

    @Test func bareDataWithoutTransactionIsRecognisedByVoucherAndBuckets() throws {
        let data = #"{"voucher":{"code":"LC-2","campaign_id":"camp_2"},"buckets":[],"points":5}"#
        #expect(try WebhookEvent(payload: parseJSON(data)) == .pointsExpired(PointsExpiredEvent(member: "LC-2", eventID: nil)))
    }

    @Test func transactionIDStandsInWhenTheEnvelopeHasNoEventID() throws {
        var expected = Self.expected
        expected.eventID = "vtx_9"
        #expect(try WebhookEvent(payload: parseJSON(Self.envelope(eventID: nil))) == .pointsExpired(expected))
    }

    @Test func otherTypesAreIgnoredAndBareObjectsOfOtherEventsToo() throws {
        #expect(try WebhookEvent(payload: parseJSON(Self.envelope(type: "voucher.published"))) == .other(type: "voucher.published"))
        let redemption = #"{"voucher":{"code":"X"},"transaction":{"id":"vtx_1","type":"POINTS_ADDITION"}}"#
        #expect(try WebhookEvent(payload: parseJSON(redemption)) == .other(type: "unknown"))
    }

    @Test(arguments: [
        "[1,2]",
        #"{"type":"voucher.loyalty_card.points_expired","data":{"voucher":{"campaign_id":"camp_1"}}}"#,
        #"{"type":"voucher.loyalty_card.points_expired","data":{"voucher":{"code":"","campaign_id":"camp_1"}}}"#,
        #"{"type":"voucher.loyalty_card.points_expired","data":{"voucher":{"code":7}}}"#,
    ])
    func pointsExpiredWithoutACardCodeIsMalformed(_ body: String) throws {
        #expect(throws: MalformedWebhook.self) { try WebhookEvent(payload: parseJSON(body)) }
    }

    @Test func overlongIdentifiersAreMalformedNotKeys() throws {
        let longID = String(repeating: "e", count: 513)
        #expect(throws: MalformedWebhook.self) { try WebhookEvent(payload: parseJSON(Self.envelope(eventID: longID))) }
        let longCode = Self.data.replacingOccurrences(of: #""code":"LC-1""#, with: #""code":"\#(longID)""#)
        #expect(throws: MalformedWebhook.self) { try WebhookEvent(payload: parseJSON(longCode)) }
    }

    @Test func whitespaceRemovalKeepsStringsAndEscapesIntact() {
        let body = "{ \"a\" : \"x \\\" y\\\\\" ,\n\t\"b\" : [ 1 , 2 ]\r\n}"
        #expect(text(WebhookPayload.removingWhitespace(Array(body.utf8))) == #"{"a":"x \" y\\","b":[1,2]}"#)
    }
}
