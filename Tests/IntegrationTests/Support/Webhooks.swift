import ExpiryDomain
import Foundation
import Voucherify

/// Signed webhook deliveries to a service under test, as a relay would forward them.
extension ServiceUnderTest {
    static let webhookSecret = "whsec_integration_test"
    static let webhookPath = "/webhooks/voucherify"

    /// A service whose webhook endpoint is on.
    static func withWebhook(_ environment: [String: String] = [:]) throws -> ServiceUnderTest {
        try ServiceUnderTest(environment: ["WEBHOOK_SECRET": webhookSecret].merging(environment) { _, override in override })
    }

    /// POSTs `body` to the webhook. `signature`: nil = signed with the test secret over the body
    /// without whitespace (as Voucherify signs; vectors checked in VoucherifyTests);
    /// "" = no header; anything else is sent as is.
    func deliver(_ body: String, signature: String? = nil, headers: [String] = []) throws -> HTTPResult {
        let header = signature ?? Self.webhookSignature(body)
        return try CurlClient.request("POST", baseURL + Self.webhookPath, body: Data(body.utf8),
                                      headers: ["content-type: application/json"] + (header.isEmpty ? [] : ["x-voucherify-signature: \(header)"]) + headers)
    }

    /// The test secret's signature of `body` without whitespace, as Voucherify signs.
    static func webhookSignature(_ body: String) -> String {
        WebhookSigner(secret: webhookSecret).signature(of: WebhookPayload.removingWhitespace(Array(body.utf8)))
    }

    /// InvalidateMember over Connect.
    func invalidate(member: String, campaign: String) throws -> HTTPResult {
        try CurlClient.request("POST", baseURL + "/pointsexpiry.v1.PointsExpiryService/InvalidateMember",
                               body: Data(#"{"campaign":"\#(campaign)","member":"\#(member)"}"#.utf8), headers: ["content-type: application/json"])
    }
}

/// A points_expired delivery in the v2024-01-01 envelope, pretty-printed the way docs show it.
func pointsExpiredEnvelope(member: String, campaignID: String = FakeVoucherify.campaignID,
                           campaignName: String = FakeVoucherify.campaignName, eventID: String = "evt_\(UUID().uuidString)") -> String {
    """
    {
      "id": "whs_\(UUID().uuidString)",
      "project_id": "proj_test",
      "created_at": "2026-11-22T00:00:05.000Z",
      "type": "voucher.loyalty_card.points_expired",
      "data": {
        "voucher": {"id": "v_test_1", "code": "\(member)", "campaign": "\(campaignName)", "campaign_id": "\(campaignID)",
                    "loyalty_card": {"points": 10, "balance": 10}},
        "points": 40,
        "campaign": {"id": "\(campaignID)", "name": "\(campaignName)"},
        "customer": null,
        "buckets": [{"id": "lopb_old", "status": "ACTIVE", "expires_at": "2026-11-21", "bucket": {"total_points": 40}}],
        "transaction": {"id": "vtx_\(UUID().uuidString)", "type": "POINTS_EXPIRATION"}
      },
      "source": {"channel": "API"},
      "event": {"id": "\(eventID)", "type": "voucher.loyalty_card.points_expired", "entity_id": "v_test_1"}
    }
    """
}
