/// Ids of one generated webhook event.
struct EventIds {
    let webhook: String
    let event: String
    let group: String
    let transaction: String
}

/// Hands out event ids that never repeat: a random token per process plus a counter, so a
/// receiver that dedupes on `event.id` or `transaction.id` sees every event as new, even across
/// restarts of the fake. Loop thread only.
final class EventIdSource {
    private let processToken: String
    private var counter = 0

    init() {
        let hex = String(UInt32.random(in: .min ... .max), radix: 16)
        processToken = String(repeating: "0", count: 8 - hex.count) + hex
    }

    func next() -> EventIds {
        counter += 1
        let suffix = "fake_\(processToken)_\(counter)"
        return EventIds(webhook: "whs_" + suffix, event: "evt_" + suffix, group: "evgr_" + suffix, transaction: "vtx_" + suffix)
    }
}
