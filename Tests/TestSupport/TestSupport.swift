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

/// A small seeded generator (SplitMix64): the same sequence on every run, for tests that draw
/// jitter or random steps.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// A request decoded the way the router hands it to a method: the generated message from its
/// codec's bytes, then the method's own checks.
public func decodeRequest<Request: RPCRequest>(_ bytes: [UInt8], codec: MessageCodec = .json, as _: Request.Type = Request.self)
    throws(RPCError) -> Request {
    try Request(message: RPCMessage(codec: codec, bytes: bytes).decode())
}

public func decodeRequest<Request: RPCRequest>(_ json: String, as type: Request.Type = Request.self) throws(RPCError) -> Request {
    try decodeRequest(Array(json.utf8), as: type)
}

/// The message of the `invalid_argument` a request is refused with, or nil when it is accepted.
public func refusal<Request: RPCRequest>(_ json: String, as type: Request.Type) -> String? {
    guard let error = rpcError({ () throws(RPCError) in try decodeRequest(json, as: type) }) else { return nil }
    #expect(error.code == .invalidArgument)
    return error.message
}
