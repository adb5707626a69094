import Codecs
import RPC

/// `grpc.health.v1.Health/Check` over Connect JSON: SERVING while this worker is not draining.
final class HealthCheck: UnaryMethod {
    let path = "/grpc.health.v1.Health/Check"
    let name = "HealthCheck"
    let hasNoSideEffects = true
    private let lifecycle: WorkerLifecycle

    init(lifecycle: WorkerLifecycle) { self.lifecycle = lifecycle }

    func call(_ message: JSONValue, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        let status = lifecycle.draining ? #"{"status":"NOT_SERVING"}"# : #"{"status":"SERVING"}"#
        reply(.success(UnaryReply(body: Array(status.utf8))))
    }
}
