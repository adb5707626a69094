import ExpiryDomain
import RPC

/// `GetCampaignExpiration` (no side effects beyond starting a campaign's first export): the
/// campaign's latest export aggregate, cut to the request's date range. `from` defaults to
/// today in the project's time zone, so dates already past drop out as the days go by.
final class GetCampaignExpiration: UnaryMethod {
    let path = "/pointsexpiry.v1.PointsExpiryService/GetCampaignExpiration"
    let name = "GetCampaignExpiration"
    let hasNoSideEffects = true
    private let exports: CampaignExports
    private let schedule: DeductionSchedule

    init(exports: CampaignExports, schedule: DeductionSchedule) {
        self.exports = exports
        self.schedule = schedule
    }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        guard let request: GetCampaignExpirationRequest = decode(message, reply: reply) else { return }
        exports.answer(campaign: request.campaign) { [schedule] result in
            reply(result.map { found in
                context.record.noteCacheResult(found.source.rawValue)
                let from = request.from ?? schedule.calendarDate(at: .now())
                let view = CampaignExpirationView(campaign: request.campaign, snapshot: found.snapshot,
                                                  range: found.snapshot.aggregate.range(from: from, to: request.to))
                return PointsExpiryServer.reply(context.codec, headers: found.cacheHeaders, json: { view.json }, proto: { view.protoMessage })
            })
        }
    }
}
