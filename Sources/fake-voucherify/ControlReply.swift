import Codecs
import Foundation

/// The answers every `/_fake/…` endpoint gives: `{"ok":true,…}`, or `{"ok":false,"error":"…"}`
/// with a 4xx status.
enum ControlReply {
    static func ok(_ extra: [(key: String, value: JSONValue)] = []) -> OutgoingResponse {
        .json(200, .object(JSONObject(members: [("ok", .bool(true))] + extra)))
    }

    static func failure(_ status: Int32, _ message: String) -> OutgoingResponse {
        .json(status, .object(["ok": .bool(false), "error": .string(message)]))
    }

    /// The JSON body as `T`; a body that does not decode is a 400 saying where it went wrong.
    /// No body reads as `{}`, so endpoints whose fields are all optional need none.
    static func decode<T: Decodable>(_ type: T.Type, _ request: IncomingRequest) throws(ControlError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: request.body.isEmpty ? Data("{}".utf8) : Data(request.body))
        } catch {
            throw .badRequest("bad JSON body: \(describeDecodingError(error))")
        }
    }
}

/// Why a control request was turned away, as the `ControlReply.failure` it becomes.
struct ControlError: Error {
    let status: Int32
    let message: String

    static func badRequest(_ message: String) -> ControlError { ControlError(status: 400, message: message) }
    static func notFound(_ message: String) -> ControlError { ControlError(status: 404, message: message) }

    var response: OutgoingResponse { ControlReply.failure(status, message) }
}
