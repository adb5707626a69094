/// The shared budget in Redis: one hash, changed only by these scripts, each one atomic EVAL.
/// The Lua is a faithful transcription of `RateBudgetState` (same names, same order of steps);
/// `RateBudgetScriptTests` runs both on the same inputs and compares every answer and state.
/// Time is Redis' own (`TIME`), so the replicas' clocks do not matter.
enum RateBudgetScript {
    /// `pe:rate-budget`: fields `tokens`, `refilled_at`, `remaining`, `remaining_until`,
    /// `remaining_reserve`, `blocked_until` (see `RateBudgetState`). A missing key or field is
    /// the initial state: a full bucket, no cap, no block.
    static let key = Array("pe:rate-budget".utf8)

    private static let eval = Array("EVAL".utf8)
    private static let oneKey = Array("1".utf8)

    /// EVAL arguments for one grant of up to `wanted` calls. Reply: `{granted, wait ms, whole
    /// tokens left or -1}` (see `BudgetDecision`).
    static func grant(upTo wanted: Int, for priority: AdmissionPriority, rules: RateBudgetRules) -> [[UInt8]] {
        [eval, grantScript, oneKey, key] + arguments(rules)
            + [number(Int64(wanted)), Array((priority == .warming ? "1" : "0").utf8)]
    }

    /// EVAL arguments recording one answer's headers. Reply: 1.
    static func observe(_ observation: BudgetObservation, rules: RateBudgetRules) -> [[UInt8]] {
        [eval, observeScript, oneKey, key] + arguments(rules)
            + [number(observation.remaining ?? -1), number(observation.remainingReserve), number(observation.blockedForMilliseconds),
               number(observation.resetJump)]
    }

    static let grantScript = Array((state + serverClock + grantBody).utf8)
    static let observeScript = Array((state + serverClock + observeBody).utf8)

    private static func arguments(_ rules: RateBudgetRules) -> [[UInt8]] {
        [rules.capacity, rules.refillPerMillisecond, rules.unitsPerToken, rules.warmingFloor,
         rules.remainingHorizonMilliseconds, rules.maxBlockMilliseconds, rules.stateLifetimeMilliseconds].map(number)
    }

    private static func number(_ value: Int64) -> [UInt8] { Array(String(value).utf8) }

    // The pieces are internal so the tests can run `state` and a body on a clock of their own.

    /// ARGV[1…7]: the rules. Loads the state and defines `refill`, `take`, `observe`, `save`.
    static let state = """
        local capacity = tonumber(ARGV[1])
        local refillPerMillisecond = tonumber(ARGV[2])
        local unitsPerToken = tonumber(ARGV[3])
        local warmingFloor = tonumber(ARGV[4])
        local remainingHorizon = tonumber(ARGV[5])
        local maxBlock = tonumber(ARGV[6])
        local lifetime = ARGV[7]

        local fields = redis.call('HMGET', KEYS[1], 'tokens', 'refilled_at', 'remaining', 'remaining_until', 'remaining_reserve', 'blocked_until')
        local s = {
            tokens = tonumber(fields[1]) or capacity,
            refilledAt = tonumber(fields[2]) or 0,
            remaining = tonumber(fields[3]) or 0,
            remainingUntil = tonumber(fields[4]) or 0,
            remainingReserve = tonumber(fields[5]) or 0,
            blockedUntil = tonumber(fields[6]) or 0,
        }

        local function refill(now)
            if capacity > 0 then
                local elapsed = math.min(math.max(0, now - s.refilledAt), unitsPerToken)
                s.tokens = math.min(capacity, s.tokens + elapsed * refillPerMillisecond)
            end
            s.refilledAt = now
            s.blockedUntil = math.min(s.blockedUntil, now + maxBlock)
            s.remainingUntil = math.min(s.remainingUntil, now + remainingHorizon)
        end

        local function tokensLeft()
            if capacity > 0 then return math.floor(s.tokens / unitsPerToken) end
            return -1
        end

        local function take(wanted, warming, now)
            refill(now)
            if s.blockedUntil > now then return {0, s.blockedUntil - now, tokensLeft()} end
            local floor, remainingFloor = 0, 0
            if warming then floor, remainingFloor = warmingFloor, s.remainingReserve end
            local capped = s.remainingUntil > now
            local granted = wanted
            if capacity > 0 then granted = math.min(granted, math.floor(math.max(0, s.tokens - floor) / unitsPerToken)) end
            if capped then granted = math.min(granted, math.max(0, s.remaining - remainingFloor)) end
            if capacity > 0 then s.tokens = s.tokens - granted * unitsPerToken end
            if capped then s.remaining = s.remaining - granted end
            local wait = 0
            if granted < wanted then
                if capacity > 0 and s.tokens - floor < unitsPerToken then
                    wait = math.ceil((floor + unitsPerToken - s.tokens) / refillPerMillisecond)
                end
                if capped and s.remaining - remainingFloor < 1 then wait = math.max(wait, s.remainingUntil - now) end
            end
            return {granted, wait, tokensLeft()}
        end

        local function observe(remaining, remainingReserve, blockedFor, resetJump, now)
            if blockedFor > 0 then
                s.blockedUntil = math.max(s.blockedUntil, now + math.min(blockedFor, maxBlock))
                s.remainingUntil = 0
            elseif remaining >= 0 and s.blockedUntil <= now
                and (s.remainingUntil <= now or remaining <= s.remaining or remaining - s.remaining >= resetJump) then
                s.remaining = remaining
                s.remainingUntil = now + remainingHorizon
                s.remainingReserve = remainingReserve
            end
        end

        local function save()
            redis.call('HSET', KEYS[1], 'tokens', s.tokens, 'refilled_at', s.refilledAt, 'remaining', s.remaining,
                'remaining_until', s.remainingUntil, 'remaining_reserve', s.remainingReserve, 'blocked_until', s.blockedUntil)
            redis.call('PEXPIRE', KEYS[1], lifetime)
        end

        """

    /// Defines `now`: Redis' clock in milliseconds.
    static let serverClock = """
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

        """

    /// ARGV[8]: how many calls are wanted; ARGV[9]: 1 for warming.
    static let grantBody = """
        local decision = take(tonumber(ARGV[8]), ARGV[9] == '1', now)
        save()
        return decision
        """

    /// ARGV[8]: remaining (-1 when not reported); ARGV[9]: its reserve; ARGV[10]: block ms (0: none);
    /// ARGV[11]: the rise that means a new window.
    static let observeBody = """
        observe(tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), now)
        save()
        return 1
        """
}
