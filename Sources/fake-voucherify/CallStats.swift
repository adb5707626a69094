import Codecs

/// Counts API calls: total, per "<campaign>|<member>" and per "<campaign>|<member>|<page>".
/// Campaign and member are the decoded path segments as the caller gave them.
final class CallStats {
    private(set) var calls = 0
    private var byMember: [String: Int] = [:]
    private var byPage: [String: Int] = [:]

    func record(campaign: String?, member: String?, page: String?) {
        calls += 1
        guard let campaign, let member else { return }
        byMember["\(campaign)|\(member)", default: 0] += 1
        if let page { byPage["\(campaign)|\(member)|\(page)", default: 0] += 1 }
    }

    func reset() {
        calls = 0
        byMember.removeAll()
        byPage.removeAll()
    }

    var json: JSONValue {
        func sortedByKey(_ counts: [String: Int]) -> JSONValue {
            .object(JSONObject(members: counts.sorted { $0.key < $1.key }.map { (key: $0.key, value: .integer($0.value)) }))
        }
        return .object(["calls": .integer(calls), "by_member": sortedByKey(byMember), "by_page": sortedByKey(byPage)])
    }
}
