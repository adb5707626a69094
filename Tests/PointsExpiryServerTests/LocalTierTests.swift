import Dispatch
import EventLoop
import ExpiryDomain
import Testing
import RPC
@testable import PointsExpiryServer

/// The in-process tier on its own: what it offers, what it keeps, what voids a fill, and its bound.
@Suite struct LocalTierTests {
    static let fetched = Timestamp(millisecondsSince1970: 1_795_000_000_000)

    /// A record of `dates` expiration dates (its JSON grows with them).
    func entry(member: String = "m", dates: Int = 1) -> CacheEntry {
        let buckets = (0..<dates).map { day in
            PointsBucket(id: "b\(day)", voucherId: "v", campaignId: "c", points: 10, status: "ACTIVE",
                         expiresAt: CalendarDate(validatingDaysSince1970: 20_800 + day), createdAt: nil, updatedAt: nil)
        }
        let expiration = MemberExpiration(campaign: "c", member: member, buckets: buckets, fetchedAt: Self.fetched)
        return .answer(CachedAnswer(expiration, freshUntil: Self.fetched.adding(milliseconds: 300_000),
                                    notAfter: Self.fetched.adding(milliseconds: 3_600_000)))
    }

    func tracking(maxBytes: Int = 1 << 20) -> LocalTier {
        let tier = LocalTier(maxBytes: maxBytes)
        tier.trackingChanged(true)
        return tier
    }

    @Test func offersNothingUntilTrackingIsOn() throws {
        let tier = LocalTier(maxBytes: 1 << 20)
        #expect(tier.fill(campaign: "c", member: "m", entry: entry(), ticket: try #require(tier.fillTicket())))
        #expect(tier.servable(campaign: "c", member: "m") == nil, "deaf: only a fallback")
        tier.trackingChanged(true)
        #expect(tier.fallback(campaign: "c", member: "m") == nil)
        let ticket = try #require(tier.fillTicket())
        #expect(tier.fill(campaign: "c", member: "m", entry: entry(), ticket: ticket))
        #expect(tier.servable(campaign: "c", member: "m")?.entry == entry())
        #expect(tier.servable(campaign: "other", member: "m") == nil)
        #expect(tier.servable(campaign: "c", member: "n") == nil)
    }

    @Test func losingTrackingStopsServingButKeepsFallbacksUntilItIsBack() throws {
        let tier = tracking()
        tier.fill(campaign: "c", member: "m", entry: entry(), ticket: try #require(tier.fillTicket()))
        tier.trackingChanged(false)
        #expect(tier.servable(campaign: "c", member: "m") == nil)
        #expect(tier.fallback(campaign: "c", member: "m")?.entry == entry())
        tier.trackingChanged(true)
        #expect(tier.fallback(campaign: "c", member: "m") == nil, "what was kept while deaf is flushed")
        #expect(tier.bytes == 0)
    }

    @Test func anInvalidationOfTheMemberOrAFlushDuringTheReadVoidsTheFill() throws {
        for void in [{ (tier: LocalTier) in tier.drop(member: "m") }, { $0.flush() },
                     { $0.trackingChanged(false); $0.trackingChanged(true) }] {
            let tier = tracking()
            let ticket = try #require(tier.fillTicket())
            void(tier)
            #expect(!tier.fill(campaign: "c", member: "m", entry: entry(), ticket: ticket))
            #expect(tier.fallback(campaign: "c", member: "m") == nil)
            #expect(tier.fill(campaign: "c", member: "m", entry: entry(), ticket: try #require(tier.fillTicket())))
        }
    }

    @Test func anotherMembersInvalidationLeavesTheFillAlone() throws {
        let tier = tracking()
        let ticket = try #require(tier.fillTicket())
        let later = try #require(tier.fillTicket())
        tier.drop(member: "other")
        #expect(tier.fill(campaign: "c", member: "m", entry: entry(), ticket: ticket))
        tier.drop(member: "n")
        #expect(!tier.fill(campaign: "c", member: "n", entry: entry(member: "n"), ticket: later))
        // With no read in flight nothing is remembered: a fill after the drop is kept.
        #expect(tier.fill(campaign: "c", member: "n", entry: entry(member: "n"), ticket: try #require(tier.fillTicket())))
    }

    @Test func tooManyDropsDuringAReadVoidItWhole() throws {
        let tier = tracking()
        let ticket = try #require(tier.fillTicket())
        for number in 0...LocalTier.maxRememberedDrops { tier.drop(member: "x\(number)") }
        #expect(!tier.fill(campaign: "c", member: "m", entry: entry(), ticket: ticket))
    }

    @Test func membersAreTheirExactBytes() throws {
        let tier = tracking()
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        #expect(composed == decomposed, "Swift deems them equal")
        tier.fill(campaign: "c", member: composed, entry: entry(), ticket: try #require(tier.fillTicket()))
        #expect(tier.servable(campaign: "c", member: decomposed) == nil, "Redis and Voucherify do not")
        #expect(tier.servable(campaign: "c", member: composed) != nil)
        tier.fill(campaign: composed, member: "m", entry: entry(), ticket: try #require(tier.fillTicket()))
        #expect(tier.servable(campaign: decomposed, member: "m") == nil)
        #expect(tier.servable(campaign: composed, member: "m") != nil)
    }

    @Test func whileDeafWhatTheWorkerLearnsLastIsTheFallback() throws {
        let tier = tracking()
        tier.fill(campaign: "c", member: "m", entry: entry(dates: 1), ticket: try #require(tier.fillTicket()))
        tier.trackingChanged(false)
        let deaf = try #require(tier.fillTicket())
        #expect(!deaf.whileTracking)
        #expect(tier.fill(campaign: "c", member: "m", entry: entry(dates: 3), ticket: deaf))
        #expect(tier.fallback(campaign: "c", member: "m")?.entry == entry(dates: 3))
        #expect(tier.servable(campaign: "c", member: "m") == nil)
        tier.fill(campaign: "c", member: "m", entry: nil, ticket: try #require(tier.fillTicket()))
        #expect(tier.fallback(campaign: "c", member: "m") == nil, "Redis had nothing: no older fallback either")
        // A read begun before an invalidation here never puts the old data back, deaf or not.
        let racing = try #require(tier.fillTicket())
        tier.drop(member: "m")
        #expect(!tier.fill(campaign: "c", member: "m", entry: entry(dates: 1), ticket: racing))
        // A ticket taken while deaf fills nothing once tracking is back (and servable never).
        let stale = try #require(tier.fillTicket())
        tier.trackingChanged(true)
        #expect(!tier.fill(campaign: "c", member: "m", entry: entry(), ticket: stale))
        #expect(tier.servable(campaign: "c", member: "m") == nil)
    }

    @Test func dropTakesEveryCampaignSpellingOfTheMember() throws {
        let tier = tracking()
        for campaign in ["camp_1", "Fake Loyalty"] {
            tier.fill(campaign: campaign, member: "m", entry: entry(), ticket: try #require(tier.fillTicket()))
        }
        tier.fill(campaign: "camp_1", member: "n", entry: entry(member: "n"), ticket: try #require(tier.fillTicket()))
        tier.drop(member: "m")
        #expect(tier.fallback(campaign: "camp_1", member: "m") == nil)
        #expect(tier.fallback(campaign: "Fake Loyalty", member: "m") == nil)
        #expect(tier.servable(campaign: "camp_1", member: "n") != nil)
        tier.drop(member: "n")
        #expect(tier.bytes == 0 && tier.memberCount == 0)
    }

    @Test func aRefillReplacesTheRecordAndItsBytes() throws {
        let tier = tracking()
        tier.fill(campaign: "c", member: "m", entry: entry(dates: 1), ticket: try #require(tier.fillTicket()))
        tier.fill(campaign: "c", member: "m", entry: entry(dates: 5), ticket: try #require(tier.fillTicket()))
        #expect(tier.servable(campaign: "c", member: "m")?.entry == entry(dates: 5))
        let record = try #require(tier.fallback(campaign: "c", member: "m"))
        tier.fill(campaign: "c", member: "m", entry: entry(dates: 5), ticket: try #require(tier.fillTicket()))
        #expect(tier.fallback(campaign: "c", member: "m") === record, "the same record read again keeps its encodings")
        let before = tier.bytes
        tier.record(record, grewBy: record.keep(protoPrefix: [1, 2, 3]), member: "m")
        #expect(record.keep(protoPrefix: [9]) == 0, "a record keeps its first binary form")
        let memo = record.gzipMemo(in: tier, member: "m")
        let body = Array(repeating: UInt8(ascii: "a"), count: 4096)
        let gzipped = memo.compressed(body)
        #expect(memo.compressed(body) == gzipped)
        #expect(tier.bytes == before + 3 + memo.bytes, "both forms count against the bound")
        // A record the tier no longer holds grows nobody's count.
        tier.fill(campaign: "c", member: "m", entry: entry(dates: 2), ticket: try #require(tier.fillTicket()))
        let replaced = tier.bytes
        _ = memo.compressed(Array(body.dropLast()))
        #expect(tier.bytes == replaced)
        tier.drop(member: "m")
        #expect(tier.bytes == 0)
    }

    @Test func staysWithinItsBytesAndEvictsWhatWasNotAskedFor() throws {
        let probe = tracking()
        probe.fill(campaign: "c", member: "m0000", entry: entry(member: "m0000", dates: 4), ticket: try #require(probe.fillTicket()))
        let perMember = probe.bytes
        let tier = tracking(maxBytes: perMember * 10)
        for number in 0..<10 {
            let member = "m\(1000 + number)"
            tier.fill(campaign: "c", member: member, entry: entry(member: member, dates: 4), ticket: try #require(tier.fillTicket()))
        }
        #expect(tier.memberCount == 10 && tier.evictions == 0)
        // Callers keep asking for the first five; the next five members push out the others.
        for number in 0..<5 { #expect(tier.servable(campaign: "c", member: "m\(1000 + number)") != nil) }
        for number in 10..<15 {
            let member = "m\(1000 + number)"
            tier.fill(campaign: "c", member: member, entry: entry(member: member, dates: 4), ticket: try #require(tier.fillTicket()))
            #expect(tier.bytes <= tier.maxBytes)
        }
        #expect(tier.evictions == 5)
        for number in 0..<5 { #expect(tier.fallback(campaign: "c", member: "m\(1000 + number)") != nil, "asked for: kept") }
        for number in 5..<10 { #expect(tier.fallback(campaign: "c", member: "m\(1000 + number)") == nil, "never asked for: evicted") }
        for number in 1000..<3000 {
            let member = "m\(number)"
            tier.fill(campaign: "c", member: member, entry: entry(member: member, dates: 1 + number % 7), ticket: try #require(tier.fillTicket()))
            if number % 3 == 0 { _ = tier.servable(campaign: "c", member: "m\(number - 1)") }
            #expect(tier.bytes <= tier.maxBytes)
        }
    }

    @Test func aRecordBiggerThanTheBoundIsNotKeptAndSizeZeroKeepsNothing() throws {
        let small = tracking(maxBytes: 100)
        #expect(!small.fill(campaign: "c", member: "m", entry: entry(dates: 20), ticket: try #require(small.fillTicket())))
        #expect(small.bytes == 0)
        let probe = tracking()
        probe.fill(campaign: "c", member: "m", entry: entry(), ticket: try #require(probe.fillTicket()))
        // The member's own bytes count too: one byte short of record and name, nothing is kept.
        let tight = tracking(maxBytes: probe.bytes - 1)
        #expect(!tight.fill(campaign: "c", member: "m", entry: entry(), ticket: try #require(tight.fillTicket())))
        let off = tracking(maxBytes: 0)
        #expect(off.fillTicket() == nil)
    }
}

/// An invalidation is answered only once every worker's tier, on its own loop, dropped the member.
@Suite struct LocalTierDirectoryTests {
    @Test func dropCompletesOnlyAfterEveryLoopDroppedTheMember() throws {
        let group = try LoopGroup(count: 3)
        try group.start()
        defer { group.stopAndWait() }
        let directory = LocalTierDirectory()
        let entry = LocalTierTests().entry()
        let tiers = try group.loops.map { loop in
            try loop.runAndWait {
                let tier = LocalTier(maxBytes: 1 << 20)
                tier.trackingChanged(true)
                tier.fill(campaign: "c", member: "m", entry: entry, ticket: tier.fillTicket()!)
                tier.fill(campaign: "c", member: "n", entry: entry, ticket: tier.fillTicket()!)
                directory.register(tier, loop: loop)
                return LoopBound(tier, loop: loop)
            }
        }
        // The other loops are kept busy: the invalidation must wait for them to drop it.
        let parked = DispatchSemaphore(value: 0)
        for loop in group.loops where loop !== group.loops[1] { loop.execute { parked.wait() } }
        let done = DispatchSemaphore(value: 0)
        let origin = group.loops[1]
        origin.execute { directory.drop(member: "m", from: origin) { done.signal() } }
        #expect(done.wait(timeout: .now() + .milliseconds(300)) == .timedOut, "answered before every tier dropped the member")
        parked.signal()
        parked.signal()
        #expect(done.wait(timeout: .now() + 30) == .success)
        for tier in tiers {
            let held = try tier.loop.runAndWait { (tier.value.fallback(campaign: "c", member: "m") == nil, tier.value.fallback(campaign: "c", member: "n") != nil) }
            #expect(held == (true, true))
        }
    }
}
