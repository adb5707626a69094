/// The campaign and cards that proto-json/examples talk about (`--contract-examples`), so the
/// examples work as written against `scripts/run.sh`. `LC-7F3K-92QD` holds exactly the buckets of
/// `get_member_expiration.response.json`; the other cards of `warm_members.request.json` exist
/// with one bucket each; `LC-0000-XXXX` does not exist (the examples' `not_found`).
enum ContractExamples {
    static let campaignId = "camp_Fk3vWgzXK2yCmZ1aQmLp7TnR"
    static let campaignName = "Example Loyalty"

    static func campaign() -> LoyaltyCampaign {
        let documented = LoyaltyMember(code: "LC-7F3K-92QD", voucherId: "v_8nB2pXqR4tLmW1yZ", buckets: [
            PointsBucket(id: "lopb_2QmT7cVb9xKd4RfA", points: 120, expiresAt: "2026-11-30", status: "ACTIVE",
                         createdAt: "2025-11-30T09:14:22.000Z", updatedAt: "2025-12-02T16:40:05.000Z"),
            PointsBucket(id: "lopb_9JwE3nHs6pLz1YuC", points: 80, expiresAt: "2027-03-31", status: "ACTIVE",
                         createdAt: "2026-03-31T11:02:47.000Z", updatedAt: nil),
            PointsBucket(id: "lopb_5XkR8gNa2vMq7TsD", points: 50, expiresAt: nil, status: "ACTIVE",
                         createdAt: "2026-06-15T08:30:00.000Z", updatedAt: "2026-06-15T08:30:00.000Z"),
        ])
        let others = [
            LoyaltyMember(code: "LC-4H8P-31ZA", voucherId: "v_3cH7kWmQ9rTzX2pL", buckets: [
                PointsBucket(id: "lopb_7PzD4kQw1nBv6HsX", points: 300, expiresAt: "2027-06-30", status: "ACTIVE",
                             createdAt: "2026-06-30T12:00:00.000Z", updatedAt: nil),
            ]),
            LoyaltyMember(code: "LC-9Q2W-55TR", voucherId: "v_6tN1yRcK8mWq3ZbD", buckets: [
                PointsBucket(id: "lopb_3VmL8xTq5cRk2NwY", points: 75, expiresAt: nil, status: "ACTIVE",
                             createdAt: "2026-02-14T10:30:00.000Z", updatedAt: nil),
            ]),
        ]
        let members = ([documented] + others).map { ($0.code, $0) }
        return LoyaltyCampaign(id: campaignId, name: campaignName, members: Dictionary(uniqueKeysWithValues: members))
    }
}
