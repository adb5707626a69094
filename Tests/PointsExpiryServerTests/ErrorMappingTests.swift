import RPC
import Testing
import Voucherify
@testable import PointsExpiryServer

@Suite struct ErrorMappingTests {
    @Test(arguments: [
        (VoucherifyError.campaignNotFound, RPCCode.notFound, #"loyalty campaign "C" was not found in Voucherify"#),
        (.memberNotFound, .notFound, #"loyalty card "M" was not found in campaign "C""#),
        (.unavailable("HTTP 503"), .unavailable, "Voucherify is unavailable: HTTP 503"),
        (.rateLimited(retryAfterSeconds: 30), .resourceExhausted, "Voucherify rate limit reached; retry in 30 s"),
        (.rateLimited(retryAfterSeconds: nil), .resourceExhausted, "Voucherify rate limit reached; retry in 1 s"),
        (.rejectedRequest(status: 400, detail: "bad limit"), .internal, "Voucherify rejected the request (HTTP 400): bad limit"),
        (.malformed("bucket 0: missing id"), .unavailable, "Voucherify sent an unreadable answer: bucket 0: missing id"),
    ])
    func mapsToRPC(_ error: VoucherifyError, _ code: RPCCode, _ message: String) {
        let mapped = error.rpcError(campaign: "C", member: "M")
        #expect(mapped.code == code)
        #expect(mapped.message == message)
    }

    /// A rate limit tells the caller when to come back, as the `retry-after` header.
    @Test func rateLimitsCarryRetryAfter() {
        #expect(VoucherifyError.rateLimited(retryAfterSeconds: 30).rpcError(campaign: "C", member: "M").retryAfterSeconds == 30)
        #expect(VoucherifyError.rateLimited(retryAfterSeconds: nil).rpcError(campaign: "C", member: "M").retryAfterSeconds == 1)
        #expect(VoucherifyError.unavailable("x").rpcError(campaign: "C", member: "M").retryAfterSeconds == nil)
    }

    @Test func credentialsNameTheSettingsNeverTheSecret() {
        for status in [401, 403] {
            let error = VoucherifyError.rejectedCredentials(status: status).rpcError(campaign: "C", member: "M")
            #expect(error.code == .internal)
            #expect(error.message.contains("HTTP \(status)"))
            #expect(error.message.contains("VOUCHERIFY_APP_ID") && error.message.contains("VOUCHERIFY_APP_TOKEN"))
        }
    }
}
