import Codecs
import Testing
@testable import Voucherify

/// Expected values computed independently with Python's `hmac` module.
@Suite struct WebhookSignerTests {
    static let secret = "whsec_test_4f2c"
    /// Pretty-printed, with non-ASCII names and whitespace, escapes and quotes inside strings.
    static let pretty = """
        {
          "type": "voucher.loyalty_card.points_expired",
          "data": {
            "voucher": {"code": "LC-Ünïcode ☃", "campaign": "Zürich Loyalty ✨", "campaign_id": "camp_1"},
            "note": "keep  these  spaces\\t and \\"quotes\\" "
          }
        }
        """
    static let compact = #"{"type":"voucher.loyalty_card.points_expired","data":{"voucher":{"code":"LC-Ünïcode ☃","campaign":"Zürich Loyalty ✨","campaign_id":"camp_1"},"note":"keep  these  spaces\t and \"quotes\" "}}"#
    static let compactSignature = "c4a397d71fd1074e5211909e94802a72f6a90f25ff9b30de0d7d105741ed4740"
    static let rawSignature = "bda0265a281cc81d1505f5e1f8004f39235b963ca2765c21c5cc0d9d988a535f"

    @Test func rfc4231TestCase2() {
        #expect(WebhookSigner(secret: "Jefe").signature(of: Array("what do ya want for nothing?".utf8))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func emptyMessage() {
        #expect(WebhookSigner(secret: Self.secret).signature(of: []) == "6f7d4a8fa879b3429743b2caf02ac91d5aca6261efb8caad635c6931a2f15298")
    }

    @Test func whitespaceRemovalMatchesVoucherifysSerialisation() {
        #expect(WebhookPayload.removingWhitespace(Array(Self.pretty.utf8)) == Array(Self.compact.utf8))
    }

    @Test func compactSignatureIsAcceptedForPrettyAndCompactBodies() {
        let signer = WebhookSigner(secret: Self.secret)
        #expect(signer.signature(of: Array(Self.compact.utf8)) == Self.compactSignature)
        #expect(signer.isValid(signature: Self.compactSignature, body: Array(Self.pretty.utf8)))
        #expect(signer.isValid(signature: Self.compactSignature, body: Array(Self.compact.utf8)))
    }

    @Test func signatureOfTheRawBodyIsAccepted() {
        let signer = WebhookSigner(secret: Self.secret)
        #expect(signer.signature(of: Array(Self.pretty.utf8)) == Self.rawSignature)
        #expect(signer.isValid(signature: Self.rawSignature, body: Array(Self.pretty.utf8)))
        // The raw-body MAC of the pretty form says nothing about a different (compact) body.
        #expect(!signer.isValid(signature: Self.rawSignature, body: Array(Self.compact.utf8)))
    }

    @Test func wrongSecretIsRejected() {
        #expect(!WebhookSigner(secret: "another-secret").isValid(signature: Self.compactSignature, body: Array(Self.pretty.utf8)))
    }

    @Test func alteredPayloadIsRejected() {
        let altered = Self.compact.replacingOccurrences(of: "camp_1", with: "camp_2")
        #expect(!WebhookSigner(secret: Self.secret).isValid(signature: Self.compactSignature, body: Array(altered.utf8)))
    }

    @Test(arguments: ["", "not-hex", String(Self.compactSignature.dropLast(2)), Self.compactSignature + "00", "sha256=" + Self.compactSignature])
    func malformedHeadersAreRejected(header: String) {
        #expect(!WebhookSigner(secret: Self.secret).isValid(signature: header, body: Array(Self.compact.utf8)))
    }
}
