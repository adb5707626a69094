import ExpiryDomain
import Glibc
import RPC

/// One worker's in-process copy of recent Redis records, so that a hit costs no Redis round trip.
/// Loop-confined (one per worker, no locks); bounded by bytes.
///
/// While tracking is on it holds only what Redis held: entries come from Redis replies (`fill`),
/// and whether an entry may be served is still the policy's call (windows, deduction instant).
/// Coherence comes from outside: invalidations (this replica's, by `drop`; every replica's, by
/// Redis tracking) drop members, and a fill whose read was in flight when its member was
/// invalidated is discarded (`FillTicket`).
///
/// While tracking is down the tier cannot hear invalidations, so its entries are *unconfirmed*:
/// `servable` offers none of them and they are only a fallback while Redis cannot be asked
/// (`fallback`); what the worker learns meanwhile (a Redis reply, or its own Voucherify read
/// while Redis cannot be asked) replaces them, under the same tickets. When tracking comes back
/// they are flushed, since changes made while it was down were never heard.
///
/// Eviction is CLOCK over members: a hit only sets a bit (no list to relink, nothing to
/// allocate), and the hand gives every member that was asked for since its last pass a second
/// chance, so the members callers keep asking for stay while one-off reads go first. Scans do not
/// reach the tier: WarmMembers never fills it.
final class LocalTier {
    /// One member's records, one per campaign spelling as callers asked (as Redis keeps them).
    private struct Slot {
        var member: ExactText
        var records: [(campaign: String, record: TierRecord)]
        var bytes: Int
        var referenced: Bool
    }

    /// Given out before a Redis read that may fill the tier; the fill is kept only if, since,
    /// the member was not invalidated and the tier was neither flushed nor deaf for a moment.
    struct FillTicket {
        fileprivate let epoch: UInt64
        fileprivate let drops: UInt64
        /// Taken while tracking was on: a fill will be servable (else only a fallback).
        let whileTracking: Bool
    }

    let maxBytes: Int
    private(set) var bytes = 0
    private var slots: [Slot?] = []
    private var freeSlots: [Int] = []
    /// Keyed by the member's exact bytes, as Redis keys are (not by Unicode equivalence).
    private var index: [ExactText: Int] = [:]
    private var hand = 0
    /// Bumped by every flush and tracking change: every fill begun before is void.
    private var epoch: UInt64 = 0
    /// Counts member drops; `droppedAt` keeps each member's last one while tickets are out, so a
    /// drop voids only the fills of its own member.
    private var drops: UInt64 = 0
    private var droppedAt: [ExactText: UInt64] = [:]
    private var ticketsOut = 0
    /// Beyond this many members dropped while reads were in flight, all of those reads are voided
    /// instead (`droppedAt` stays small whatever the fleet's invalidation rate).
    static let maxRememberedDrops = 4096
    /// Tracking is on: invalidations are heard, so entries may be served.
    private(set) var isTracking = false
    /// Members evicted to make room (tests; `evicted` reports each eviction for metrics).
    private(set) var evictions = 0
    private let evicted: (() -> Void)?

    /// What an entry costs beside its bytes: the slot, the index entry, the record's fields.
    static let overheadBytes = 160

    init(maxBytes: Int, evicted: (() -> Void)? = nil) {
        self.maxBytes = max(0, maxBytes)
        self.evicted = evicted
    }

    var memberCount: Int { index.count }

    /// The record for `member` under `campaign` when tracking is on (nil otherwise), marked as used.
    func servable(campaign: String, member: String) -> TierRecord? {
        guard isTracking else { return nil }
        return record(campaign: campaign, member: member, markUsed: true)
    }

    /// The record held for `member` under `campaign`, confirmed or not: what may be served while
    /// Redis cannot be asked.
    func fallback(campaign: String, member: String) -> TierRecord? {
        record(campaign: campaign, member: member, markUsed: false)
    }

    private func record(campaign: String, member: String, markUsed: Bool) -> TierRecord? {
        guard let position = index[ExactText(member)], let slot = slots[position] else { return nil }
        for held in slot.records where ExactText.same(held.campaign, campaign) {
            if markUsed && !slot.referenced { slots[position]!.referenced = true }
            return held.record
        }
        return nil
    }

    /// A ticket for a read that may fill the tier; nil when the tier holds nothing (size 0).
    /// Every ticket must come back through `fill` or `returnTicket`.
    func fillTicket() -> FillTicket? {
        guard maxBytes > 0 else { return nil }
        ticketsOut += 1
        return FillTicket(epoch: epoch, drops: drops, whileTracking: isTracking)
    }

    /// A read that fills nothing (Redis did not answer a record) gives its ticket back.
    func returnTicket(_ ticket: FillTicket) {
        ticketsOut -= 1
        if ticketsOut == 0 { droppedAt.removeAll(keepingCapacity: true) }
    }

    /// Keeps `entry` (just read under `ticket`) unless the member was invalidated, the tier
    /// flushed, or tracking turned on or off since the ticket was taken (each change bumps the
    /// epoch, so a ticket taken while deaf fills an unconfirmed fallback, never a servable entry).
    /// `entry` nil (Redis has nothing) forgets what was held. Returns whether `entry` is held now.
    @discardableResult
    func fill(campaign: String, member: String, entry: CacheEntry?, ticket: FillTicket) -> Bool {
        defer { returnTicket(ticket) }
        let key = ExactText(member)
        guard let entry else {
            if let position = index[key] { removeRecord(campaign: campaign, at: position) }
            return false
        }
        guard ticket.epoch == epoch, (droppedAt[key] ?? 0) <= ticket.drops else { return false }
        return hold(campaign: campaign, member: key, entry: entry)
    }

    @discardableResult
    private func hold(campaign: String, member: ExactText, entry: CacheEntry) -> Bool {
        if let position = index[member], let slot = slots[position],
           let held = slot.records.first(where: { ExactText.same($0.campaign, campaign) })?.record, held.entry == entry {
            return true // the very record held (a stale one read again): keep it with its encodings
        }
        if let position = index[member] {
            removeRecord(campaign: campaign, at: position)
        }
        let record = TierRecord(entry)
        let size = Self.footprint(campaign: campaign, record: record)
        let memberBytes = member.text.utf8.count
        guard size + memberBytes <= maxBytes else { return false }
        // Room for the member's name too: CLOCK may evict the member's own slot meanwhile.
        makeRoom(for: size + memberBytes)
        if let position = index[member], slots[position] != nil {
            slots[position]!.records.append((campaign, record))
            slots[position]!.bytes += size
        } else {
            let slot = Slot(member: member, records: [(campaign, record)], bytes: size + memberBytes, referenced: false)
            let position: Int
            if let free = freeSlots.popLast() {
                slots[free] = slot
                position = free
            } else {
                slots.append(slot)
                position = slots.count - 1
            }
            index[member] = position
            bytes += memberBytes
        }
        bytes += size
        return true
    }

    /// `record` grew (it made its binary or gzip form) by `extra` bytes (negative: shrank): counts it
    /// against the bound while the tier still holds that very record.
    func record(_ record: TierRecord, grewBy extra: Int, member: String) {
        guard extra != 0, let position = index[ExactText(member)], let slot = slots[position],
              slot.records.contains(where: { $0.record === record }) else {
            return
        }
        slots[position]!.bytes += extra
        bytes += extra
        if bytes > maxBytes { makeRoom(for: 0) }
    }

    /// Drops every campaign spelling of `member` and voids its fills in flight.
    func drop(member: String) {
        let key = ExactText(member)
        drops &+= 1
        if ticketsOut > 0 {
            if droppedAt.count >= Self.maxRememberedDrops {
                epoch &+= 1
                droppedAt.removeAll(keepingCapacity: true)
            } else {
                droppedAt[key] = drops
            }
        }
        guard let position = index.removeValue(forKey: key), let slot = slots[position] else { return }
        bytes -= slot.bytes
        slots[position] = nil
        freeSlots.append(position)
    }

    /// Drops everything (FLUSHALL, an invalidation too big to list) and voids fills in flight.
    func flush() {
        epoch &+= 1
        droppedAt.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
        freeSlots.removeAll(keepingCapacity: true)
        index.removeAll(keepingCapacity: true)
        bytes = 0
        hand = 0
    }

    /// Tracking went on (flush what was kept while it was off: changes then were never heard) or
    /// off (keep entries as unconfirmed fallbacks only).
    func trackingChanged(_ tracking: Bool) {
        if tracking { flush() } else { epoch &+= 1 }
        isTracking = tracking
    }

    // MARK: Bound

    private func removeRecord(campaign: String, at position: Int) {
        guard let slot = slots[position], let found = slot.records.firstIndex(where: { ExactText.same($0.campaign, campaign) }) else {
            return
        }
        let size = Self.footprint(campaign: campaign, record: slot.records[found].record)
        slots[position]!.records.remove(at: found)
        slots[position]!.bytes -= size
        bytes -= size
    }

    /// Evicts members by CLOCK until `size` more bytes fit.
    private func makeRoom(for size: Int) {
        // Two full turns at most: the first clears every reference bit, the second evicts.
        var steps = 2 * slots.count + 1
        while bytes + size > maxBytes, !index.isEmpty, steps > 0 {
            steps -= 1
            if hand >= slots.count { hand = 0 }
            defer { hand += 1 }
            guard let slot = slots[hand] else { continue }
            if slot.referenced {
                slots[hand]!.referenced = false
                continue
            }
            index[slot.member] = nil
            bytes -= slot.bytes
            slots[hand] = nil
            freeSlots.append(hand)
            evictions += 1
            evicted?()
        }
    }

    private static func footprint(campaign: String, record: TierRecord) -> Int {
        overheadBytes + campaign.utf8.count + record.bytes
    }
}

/// One record held in the tier, with the encodings hits need made once: the JSON prefix is the
/// record's own; the binary prefix is made on the first binary hit, and the gzip form of the last
/// body a caller asked compressed is kept in `gzipMemo`.
final class TierRecord {
    let entry: CacheEntry
    private(set) var protoPrefix: [UInt8]?
    private(set) var gzipMemo: GzipMemo?

    init(_ entry: CacheEntry) {
        self.entry = entry
    }

    /// Bytes held (the binary prefix and gzip form once made).
    var bytes: Int {
        let recordBytes = switch entry {
        case .answer(let answer): answer.bodyPrefix.count + answer.expirations.count * CachedAnswer.expirationSize
        case .notFound: 24
        }
        return recordBytes + (protoPrefix?.count ?? 0) + (gzipMemo?.bytes ?? 0)
    }

    /// The record's gzip memo, made on first use; its growth is counted in `tier` for `member`.
    func gzipMemo(in tier: LocalTier, member: String) -> GzipMemo {
        if let gzipMemo { return gzipMemo }
        let memo = GzipMemo { [weak self, weak tier] extra in
            guard let self, let tier else { return }
            tier.record(self, grewBy: extra, member: member)
        }
        gzipMemo = memo
        return memo
    }

    /// Keeps the binary prefix made from this record; returns the bytes it adds.
    func keep(protoPrefix prefix: [UInt8]) -> Int {
        guard protoPrefix == nil else { return 0 }
        protoPrefix = prefix
        return prefix.count
    }
}

/// Text compared and hashed by its exact UTF-8 bytes, as Redis compares keys: two spellings Swift
/// deems equal (NFC and NFD) are two members, as they are in Redis and Voucherify.
struct ExactText: Hashable {
    let text: String

    init(_ text: String) {
        self.text = text
    }

    static func == (lhs: ExactText, rhs: ExactText) -> Bool { same(lhs.text, rhs.text) }

    /// Byte equality over the strings' contiguous UTF-8 (a generic `elementsEqual` walk of the
    /// UTF-8 views cost the hit path about 2k instructions).
    static func same(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        var (a, b) = (a, b)
        return a.withUTF8 { x in b.withUTF8 { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
    }

    func hash(into hasher: inout Hasher) {
        var text = text
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
