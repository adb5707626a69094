import HTTPServer
import RPC
import RedisClient

/// Whether this worker can serve: not draining, and Redis answers within the Redis client's
/// command timeout — a Redis that refuses our credentials or hangs is not ready, whatever the
/// TCP connection says. What the connection already knows (a command overdue, a refused
/// handshake, no connection) answers at once; otherwise a PING must come back in time, so an
/// idle worker does not vouch for a Redis that stopped answering a moment ago. `/readyz` and the
/// health RPC both ask here.
struct Readiness {
    let redis: RedisConnection
    let lifecycle: WorkerLifecycle

    private static let ping = [Array("PING".utf8)]

    /// nil when ready, else why not ("draining", "Redis not answering within 500 ms", …).
    /// Completes on the loop.
    func check(_ completion: @escaping (String?) -> Void) {
        guard !lifecycle.draining else { return completion("draining") }
        if let reason = redis.notReadyReason { return completion(reason) }
        redis.send(Self.ping) { [redis] result in
            switch result {
            case .success(.status("PONG")): completion(nil)
            case .success(.error(let message)): completion(RedisError.server(message).description)
            case .success: completion("unexpected answer to PING")
            case .failure(let error): completion(redis.notReadyReason ?? error.description)
            }
        }
    }

    /// `GET /readyz`: 200 `ready`, or 503 with the reason.
    var route: PlainRoute {
        PlainRoute(method: "GET") { _, respond in
            check { reason in
                respond(HTTPResponse(status: reason == nil ? 200 : 503, headers: [("content-type", "text/plain")],
                                     body: Array((reason.map { "not ready: \($0)\n" } ?? "ready\n").utf8)))
            }
        }
    }
}
