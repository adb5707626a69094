import Testing
import TestSupport
@testable import PointsExpiryServer

@Suite struct CampaignRequestTests {
    @Test func readsTheRangeInEitherSpelling() throws {
        let request: GetCampaignExpirationRequest = try decodeRequest(#"{"campaign":"camp_1","from":"2026-12-01","to":"2027-02-28"}"#)
        #expect(request.campaign == "camp_1")
        #expect(request.from == (try day("2026-12-01")))
        #expect(request.to == (try day("2027-02-28")))
        let bare: GetCampaignExpirationRequest = try decodeRequest(#"{"campaign":"Fake Loyalty","unknown":1}"#)
        #expect(bare.from == nil && bare.to == nil)
    }

    @Test func aOneDayRangeIsFine() throws {
        let request: GetCampaignExpirationRequest = try decodeRequest(#"{"campaign":"c","from":"2026-12-01","to":"2026-12-01"}"#)
        #expect(request.from == request.to)
    }

    @Test(arguments: [
        (#"{"campaign":""}"#, "campaign is required"),
        (#"{"campaign":".."}"#, "dot segment"),
        (#"{"campaign":"c","from":"2026-02-30"}"#, "from must be a real date"),
        (#"{"campaign":"c","to":"tomorrow"}"#, "to must be a real date"),
        (#"{"campaign":"c","from":"2026-12-02","to":"2026-12-01"}"#, "to (2026-12-01) is before from (2026-12-02)"),
    ])
    func refusesWhatCannotBeAnswered(_ json: String, _ message: String) {
        #expect(refusal(json, as: GetCampaignExpirationRequest.self)?.contains(message) == true)
    }
}
