import ExpiryCore
import RedisCache

/// The one invalidation path, shared by the webhook and the InvalidateMember RPC: drops a member's
/// cached answers under every known spelling of its campaign and fences refills in flight.
///
/// The spellings given are invalidated at once, while their other known spellings are looked up;
/// only spellings learned that way need a second round. Each spelling's invalidation (and its
/// handled-event mark) is atomic on its own, so a retry after a partial failure redoes exactly
/// what is missing.
final class MemberInvalidator {
    struct Outcome: Equatable {
        /// Something was cached under at least one spelling.
        var droppedAny: Bool
        /// The event was already handled under every spelling: nothing was touched.
        var alreadyHandled: Bool
    }

    private let cache: MemberCache
    private let spellings: CampaignSpellings

    init(cache: MemberCache, spellings: CampaignSpellings) {
        self.cache = cache
        self.spellings = spellings
    }

    /// Completes once, on the loop, after every spelling answered: success only if all of them
    /// were invalidated (or had already handled `eventID`).
    func invalidate(member: String, campaigns: [String], eventID: String?,
                    completion: @escaping (Result<Outcome, RedisError>) -> Void) {
        let run = Run(member: member, eventID: eventID, cache: cache, completion: completion)
        run.start(campaigns: campaigns, spellings: spellings)
    }

    /// One invalidation in progress: counts outstanding replies and finishes after the last.
    private final class Run {
        private let member: String
        private let eventID: String?
        private let cache: MemberCache
        private var completion: ((Result<Outcome, RedisError>) -> Void)?
        private var outstanding = 0
        private var invalidated: Set<String> = []
        private var learned: Set<String> = []
        private var outcomes: [InvalidationOutcome] = []
        private var failure: RedisError?
        private var secondRoundDone = false

        init(member: String, eventID: String?, cache: MemberCache, completion: @escaping (Result<Outcome, RedisError>) -> Void) {
            self.member = member
            self.eventID = eventID
            self.cache = cache
            self.completion = completion
        }

        func start(campaigns: [String], spellings: CampaignSpellings) {
            guard !campaigns.isEmpty else {
                completion?(.success(Outcome(droppedAny: false, alreadyHandled: false)))
                completion = nil
                return
            }
            outstanding = campaigns.count * 2
            invalidate(campaigns)
            for campaign in campaigns {
                spellings.others(of: campaign) { [self] result in
                    switch result {
                    case .success(let others): learned.formUnion(others)
                    case .failure(let error): failure = failure ?? error
                    }
                    replied()
                }
            }
        }

        private func invalidate(_ campaigns: [String]) {
            for campaign in campaigns {
                invalidated.insert(campaign)
                cache.invalidate(campaign: campaign, member: member, eventID: eventID) { [self] result in
                    switch result {
                    case .success(let outcome): outcomes.append(outcome)
                    case .failure(let error): failure = failure ?? error
                    }
                    replied()
                }
            }
        }

        private func replied() {
            outstanding -= 1
            guard outstanding == 0, let completion else { return }
            if let failure {
                self.completion = nil
                return completion(.failure(failure))
            }
            let remaining = learned.subtracting(invalidated).sorted()
            if !secondRoundDone, !remaining.isEmpty {
                secondRoundDone = true
                outstanding = remaining.count
                return invalidate(remaining)
            }
            self.completion = nil
            completion(.success(Outcome(droppedAny: outcomes.contains(.dropped),
                                        alreadyHandled: eventID != nil && outcomes.allSatisfy { $0 == .alreadyHandled })))
        }
    }
}
