import APIMessages
import RPC

/// `grpc.health.v1.Health/Check`, as Kubernetes `grpc` probes and grpc_health_probe call it
/// (binary gRPC) and over Connect: SERVING exactly when `/readyz` would answer 200 (not
/// draining, Redis answering in time), else NOT_SERVING; a service this process does not serve
/// is NOT_FOUND.
final class HealthCheck: UnaryMethod {
    let path = "/grpc.health.v1.Health/Check"
    let name = "HealthCheck"
    let hasNoSideEffects = true
    /// "" asks about the server as a whole.
    static let services: Set<String> = ["", "pointsexpiry.v1.PointsExpiryService"]
    private let readiness: Readiness

    init(readiness: Readiness) { self.readiness = readiness }

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        let request: Grpc_Health_V1_HealthCheckRequest
        do {
            request = try message.decode()
        } catch {
            return reply(.failure(error))
        }
        guard Self.services.contains(request.service) else {
            return reply(.failure(RPCError(.notFound, "unknown service \"\(request.service)\"; this server answers for \"\" and pointsexpiry.v1.PointsExpiryService")))
        }
        readiness.check { reason in
            let serving = reason == nil
            reply(.success(PointsExpiryServer.reply(context.codec, json: {
                Array((serving ? #"{"status":"SERVING"}"# : #"{"status":"NOT_SERVING"}"#).utf8)
            }, proto: {
                var response = Grpc_Health_V1_HealthCheckResponse()
                response.status = serving ? .serving : .notServing
                return response
            })))
        }
    }
}

/// `grpc.health.v1.Health/Watch` is a server stream, which this server does not offer; saying so
/// by name beats "no such method" for a probe configured to watch.
final class HealthWatch: UnaryMethod {
    let path = "/grpc.health.v1.Health/Watch"
    let name = "HealthWatch"
    let hasNoSideEffects = false

    func call(_ message: RPCMessage, context: RPCContext, reply: @escaping (Result<UnaryReply, RPCError>) -> Void) {
        reply(.failure(RPCError(.unimplemented, "Health/Watch is not implemented; poll Health/Check")))
    }
}
