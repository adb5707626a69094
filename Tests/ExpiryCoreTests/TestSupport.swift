import Testing
@testable import ExpiryCore

func day(_ iso: String) throws -> CalendarDate {
    try #require(CalendarDate(iso: iso))
}

func instant(_ rfc3339: String) throws -> Timestamp {
    try #require(Timestamp(rfc3339: rfc3339))
}

func parseJSON(_ text: String, maxDepth: Int = 64) throws -> JSONValue {
    try JSONParser.parse(Array(text.utf8), maxDepth: maxDepth)
}

func text(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self)
}

func bucket(
    _ id: String, _ points: Int64, _ expiresAt: CalendarDate?, status: String = "ACTIVE",
    voucherId: String = "v_1", campaignId: String = "camp_1",
    createdAt: Timestamp? = nil, updatedAt: Timestamp? = nil
) -> PointsBucket {
    PointsBucket(
        id: id, voucherId: voucherId, campaignId: campaignId, points: points, status: status,
        expiresAt: expiresAt, createdAt: createdAt, updatedAt: updatedAt)
}

/// The syntax error a document produces, or nil when it parses.
func syntaxError(_ text: String, maxDepth: Int = 64) -> JSONSyntaxError? {
    do {
        _ = try parseJSON(text, maxDepth: maxDepth)
        return nil
    } catch let error as JSONSyntaxError {
        return error
    } catch {
        Issue.record("unexpected error type \(error)")
        return nil
    }
}

/// The domain error a throwing call produces, or nil when it succeeds.
func expiryError<T>(_ body: () throws(ExpiryError) -> T) -> ExpiryError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}
