import ExpiryDomain
import Voucherify
// TEMPORARY until the upstream branch lands (it gives VoucherifyAPI this signature).
extension VoucherifyAPI {
    func fetchMemberBuckets(campaign: String, member: String, deadline: Int64, admission: UpstreamAdmission,
                            completion: @escaping (Result<[PointsBucket], VoucherifyError>) -> Void) {
        admission.admit(deadline: deadline) { [self] granted in
            if case .failure(let error) = granted { return completion(.failure(error)) }
            fetchMemberBuckets(campaign: campaign, member: member, completion: completion)
        }
    }
}
