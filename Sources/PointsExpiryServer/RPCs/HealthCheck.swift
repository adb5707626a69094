import Codecs
import RPC

/// `grpc.health.v1.Health/Check` over Connect JSON: SERVING exactly when `/readyz` would
/// answer 200 (not draining, Redis answering in time), else NOT_SERVING.
final class HealthCheck: UnaryMethod {
    let path = "/grpc.health.v1.Health/Check"
    let name = "HealthCheck"
    let hasNoSideEffects = true
    private let readiness: Readiness

    init(readiness: Readiness) { self.readiness = readiness }

    func call(_ message: JSONValue, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        readiness.check { reason in
            let status = reason == nil ? #"{"status":"SERVING"}"# : #"{"status":"NOT_SERVING"}"#
            reply(.success(UnaryReply(body: Array(status.utf8))))
        }
    }
}
