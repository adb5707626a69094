import Foundation

/// One of the few stacks (redis-server + fake Voucherify + service) allowed to exist at once.
/// Swift Testing runs suites in parallel; on a small shared machine more stacks than cores only
/// make every test slower and their timeouts likelier. Take a permit before starting any part
/// of a stack and keep it until every part has stopped; `deinit` gives it back.
///
/// Blocking a test thread here is fine: a permit holder never waits for another test, and never
/// takes a second permit.
final class StackPermit: @unchecked Sendable {
    /// PE_TEST_MAX_STACKS overrides the default of 2.
    static let limit = ProcessInfo.processInfo.environment["PE_TEST_MAX_STACKS"].flatMap(Int.init).map { max(1, $0) } ?? 2
    private static let slots = DispatchSemaphore(value: limit)

    init() { Self.slots.wait() }
    deinit { Self.slots.signal() }
}
