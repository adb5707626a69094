import HTTPServer
import RPC
import RedisClient

/// Whether this worker can serve: not draining, and Redis answers a PING within the Redis
/// client's command timeout right now — a Redis that refuses our credentials or hangs is not
/// ready, whatever the TCP connection says. `/readyz` and the health RPC both ask here.
struct Readiness {
    let redis: RedisConnection
    let lifecycle: WorkerLifecycle

    private static let ping = [Array("PING".utf8)]

    /// nil when ready, else why not. Completes on the loop.
    func check(_ completion: @escaping (String?) -> Void) {
        guard !lifecycle.draining else { return completion("draining") }
        redis.send(Self.ping) { result in
            switch result {
            case .success(.status("PONG")): completion(nil)
            case .success(let other): completion("Redis answered PING with \(other)")
            case .failure(let error): completion(error.description)
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
