@testable import HTTPServer
import Testing

struct RequestByteBudgetTests {
    /// Bodies stop short of the headroom, so a flood of unfinished uploads never leaves a
    /// body-less request (a probe, a scrape) without room for its headers.
    @Test func bodiesLeaveHeadroomForHeaders() {
        let budget = RequestByteBudget(limit: 16 * 1024)
        #expect(budget.headersHeadroom == 1024)
        #expect(budget.reserve(15 * 1024, for: .body))
        #expect(!budget.reserve(1, for: .body))
        #expect(budget.reserve(1024, for: .headers))
        #expect(!budget.reserve(1, for: .headers))
        #expect(budget.used == 16 * 1024)
        budget.release(1024)
        #expect(!budget.reserve(1, for: .body), "the freed bytes are the headroom again")
        budget.release(15 * 1024)
        #expect(budget.used == 0)
        #expect(budget.reserve(15 * 1024, for: .body))
    }

    @Test func theHeadroomIsAtMostOneMebibyte() {
        #expect(RequestByteBudget(limit: 64 * 1024 * 1024).headersHeadroom == 1024 * 1024)
        #expect(RequestByteBudget(limit: 0).headersHeadroom == 0)
        #expect(!RequestByteBudget(limit: 0).reserve(1, for: .headers))
    }
}
