import Codecs
import EventLoop

/// `/_fake/hold` and `/_fake/release`: API calls matching a hold rule get no answer until they
/// are released, so a test can see what a caller does while Voucherify is slow (how many reads
/// it sends at once, whether it serves data changed meanwhile). Each held call is answered after
/// its rule's `holdMs` at the latest, so nothing waits forever. Loop-confined.
final class ReadHolds {
    static let maxRules = 1000
    static let defaultHoldMs = 30_000
    static let holdMsRange = 1...600_000

    /// Which calls a rule or a release is about; a nil field matches any.
    struct Selector: Equatable {
        let member: String?
        let campaign: String?

        /// An empty field is refused: omitting it is how to say "any".
        init(member: String?, campaign: String?) throws(ControlError) {
            guard member?.isEmpty != true, campaign?.isEmpty != true else {
                throw .badRequest("member and campaign must not be empty; omit one to mean any")
            }
            self.member = member
            self.campaign = campaign
        }

        func matches(_ subject: CallSubject) -> Bool {
            (member == nil || member == subject.member) && (campaign.map(subject.campaignSpellings.contains) ?? true)
        }

        /// Releasing `self` lifts `rule` when every field given here equals the rule's: releasing
        /// one member leaves a hold on every member in place.
        func covers(_ rule: Selector) -> Bool {
            (member == nil || member == rule.member) && (campaign == nil || campaign == rule.campaign)
        }

        var json: [(key: String, value: JSONValue)] {
            [("member", member.map { .string($0) } ?? .null), ("campaign", campaign.map { .string($0) } ?? .null)]
        }
    }

    struct Rule {
        let selector: Selector
        let holdMs: Int
    }

    /// The member a call is for and every spelling of its campaign (as called, and the id and
    /// name it resolves to), so a rule naming the campaign either way holds it.
    struct CallSubject {
        let member: String
        let campaignSpellings: [String]
    }

    /// A call being held: its answer runs once, at release or when its time is up. The API creates
    /// it before the server starts the hold, so the call's end can always find it again.
    final class HeldCall {
        let subject: CallSubject
        fileprivate var answer: (() -> Void)?
        fileprivate var deadline: Timer?

        init(subject: CallSubject) {
            self.subject = subject
        }
    }

    /// The body `POST /_fake/hold` accepts.
    struct HoldRequest: Decodable {
        let member: String?
        let campaign: String?
        let hold_ms: Int?
    }

    /// The body `POST /_fake/release` accepts.
    struct ReleaseRequest: Decodable {
        let member: String?
        let campaign: String?
    }

    private let loop: Loop
    private(set) var rules: [Rule] = []
    private var held: [ObjectIdentifier: HeldCall] = [:]

    init(loop: Loop) {
        self.loop = loop
    }

    /// How long to hold a call for `subject`: the first matching rule's time; nil when none matches.
    func holdMs(for subject: CallSubject) -> Int? {
        rules.first { $0.selector.matches(subject) }?.holdMs
    }

    /// Adds a rule, replacing one with the same selector.
    func add(_ request: HoldRequest) throws(ControlError) {
        let selector = try Selector(member: request.member, campaign: request.campaign)
        let holdMs = request.hold_ms ?? ReadHolds.defaultHoldMs
        guard ReadHolds.holdMsRange.contains(holdMs) else {
            throw .badRequest("hold_ms must be \(ReadHolds.holdMsRange.lowerBound)…\(ReadHolds.holdMsRange.upperBound)")
        }
        let rule = Rule(selector: selector, holdMs: holdMs)
        if let index = rules.firstIndex(where: { $0.selector == selector }) {
            rules[index] = rule
        } else if rules.count < ReadHolds.maxRules {
            rules.append(rule)
        } else {
            throw .badRequest("at most \(ReadHolds.maxRules) hold rules; release some first")
        }
    }

    /// Keeps `call` unanswered until it is released or `milliseconds` have passed; then runs `answer`.
    func hold(_ call: HeldCall, for milliseconds: Int, answer: @escaping () -> Void) {
        do {
            call.deadline = try Timer.schedule(on: loop, after: milliseconds) { [weak self] in self?.answerHeld(call) }
        } catch {
            logError("cannot set a hold timer (\(error)); answering at once")
            answer()
            return
        }
        call.answer = answer
        held[ObjectIdentifier(call)] = call
    }

    /// The call ended without being released (its connection closed, or the server stopped):
    /// drop it and its timer. libevent notices a client that gave up only when it answers, so
    /// until then such a call still counts as held.
    func forget(_ call: HeldCall) {
        guard held.removeValue(forKey: ObjectIdentifier(call)) != nil else { return }
        call.deadline?.cancel()
        call.answer = nil
    }

    /// Answers every held call `request` matches and lifts the rules it covers; returns how many of each.
    func release(_ request: ReleaseRequest) throws(ControlError) -> (calls: Int, rules: Int) {
        let selector = try Selector(member: request.member, campaign: request.campaign)
        let rulesBefore = rules.count
        rules.removeAll { selector.covers($0.selector) }
        // Collected first: answering a call ends it, and its end forgets it from `held`.
        let releasing = held.values.filter { selector.matches($0.subject) }
        releasing.forEach(answerHeld)
        return (releasing.count, rulesBefore - rules.count)
    }

    /// `GET /_fake/hold`.
    var json: JSONValue {
        .object([
            "rules": .array(rules.map { .object(JSONObject(members: $0.selector.json + [("hold_ms", .integer($0.holdMs))])) }),
            "held": .integer(held.count),
        ])
    }

    private func answerHeld(_ call: HeldCall) {
        guard held.removeValue(forKey: ObjectIdentifier(call)) != nil else { return }
        call.deadline?.cancel()
        let answer = call.answer
        call.answer = nil
        answer?()
    }
}
