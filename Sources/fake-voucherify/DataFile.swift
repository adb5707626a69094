import ExpiryDomain
import Foundation

/// `--data FILE`: `{"campaigns":[{"id":"camp_…","name":"…","members":{"CARD":{"voucher_id":"v_…","buckets":[…]}}}]}`.
enum DataFile {
    private struct FileShape: Decodable {
        let campaigns: [CampaignShape]
    }
    private struct CampaignShape: Decodable {
        let id: String
        let name: String?
        let members: [String: MemberShape]?
    }
    private struct MemberShape: Decodable {
        let voucher_id: String?
        let buckets: [BucketInput]?
    }

    static func load(path: String, now: Int64) throws -> [LoyaltyCampaign] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw InputError(description: "cannot read data file \(path): \(error.localizedDescription)")
        }
        let shape: FileShape
        do {
            shape = try JSONDecoder().decode(FileShape.self, from: data)
        } catch {
            throw InputError(description: "data file \(path): \(describeDecodingError(error))")
        }
        var builder = BucketBuilder(defaultCreatedAt: Timestamp(millisecondsSince1970: now * 1000).rfc3339)
        var campaigns: [LoyaltyCampaign] = []
        var voucherCounter = 0
        for c in shape.campaigns {
            guard !c.id.isEmpty else { throw InputError(description: "data file \(path): a campaign has an empty id") }
            if campaigns.contains(where: { $0.id == c.id }) {
                throw InputError(description: "data file \(path): campaign \(c.id) appears twice")
            }
            var members: [String: LoyaltyMember] = [:]
            // Sorted so generated voucher ids do not depend on dictionary order.
            for code in (c.members ?? [:]).keys.sorted() {
                guard let m = c.members?[code], !code.isEmpty else { continue }
                let buckets = try builder.build(m.buckets ?? [], context: "data file \(path): campaign \(c.id) member \(code)")
                voucherCounter += 1
                let voucherId = m.voucher_id ?? "v_file_\(voucherCounter)"
                members[code] = LoyaltyMember(code: code, voucherId: voucherId, buckets: buckets)
            }
            campaigns.append(LoyaltyCampaign(id: c.id, name: c.name ?? c.id, members: members))
        }
        return campaigns
    }
}
