// Helpers shared by the unit-test targets (a library target that only tests depend on).
import Codecs
import ExpiryDomain
import RPC
import Testing

public func day(_ iso: String) throws -> CalendarDate {
    try #require(CalendarDate(iso: iso))
}

public func instant(_ rfc3339: String) throws -> Timestamp {
    try #require(Timestamp(rfc3339: rfc3339))
}

public func parseJSON(_ text: String, maxDepth: Int = 64) throws -> JSONValue {
    try JSONParser.parse(Array(text.utf8), maxDepth: maxDepth)
}

public func text(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self)
}

public func bucket(
    _ id: String, _ points: Int64, _ expiresAt: CalendarDate?, status: String = "ACTIVE",
    voucherId: String = "v_1", campaignId: String = "camp_1",
    createdAt: Timestamp? = nil, updatedAt: Timestamp? = nil
) -> PointsBucket {
    PointsBucket(
        id: id, voucherId: voucherId, campaignId: campaignId, points: points, status: status,
        expiresAt: expiresAt, createdAt: createdAt, updatedAt: updatedAt)
}

/// The RPC error a throwing call produces, or nil when it succeeds.
public func rpcError<T>(_ body: () throws(RPCError) -> T) -> RPCError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}
