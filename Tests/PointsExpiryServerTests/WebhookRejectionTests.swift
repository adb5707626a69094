import Testing
@testable import PointsExpiryServer

@Suite struct WebhookRejectionTests {
    @Test func rejectionsMapToTheStatusesRelaysActOn() {
        #expect(WebhookRejection.notConfigured.httpStatus == 503)
        #expect(WebhookRejection.notConfigured.error.message.contains("WEBHOOK_SECRET"))
        #expect(WebhookRejection.missingSignature.httpStatus == 401)
        #expect(WebhookRejection.badSignature.httpStatus == 401)
        #expect(WebhookRejection.malformed("x").httpStatus == 400)
        #expect(WebhookRejection.tooLarge(limit: 1).httpStatus == 413)
        #expect(WebhookRejection.cacheUnavailable("down").httpStatus == 503)
    }
}
