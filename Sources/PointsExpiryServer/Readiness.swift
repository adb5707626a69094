import HTTPServer
import RPC
import RedisClient

/// `GET /readyz`: 200 only when this worker is not draining and Redis answers a PING within the
/// Redis client's command timeout right now — a Redis that refuses our credentials or hangs is
/// not ready, whatever the TCP connection says.
struct Readiness {
    let redis: RedisConnection
    let lifecycle: WorkerLifecycle

    private static let ping = [Array("PING".utf8)]

    var route: PlainRoute {
        PlainRoute(method: "GET") { [redis, lifecycle] _, respond in
            guard !lifecycle.draining else { return respond(Self.answer(ready: false, "draining")) }
            redis.send(Self.ping) { result in
                switch result {
                case .success(.status("PONG")):
                    respond(Self.answer(ready: true, "ready"))
                case .success(let other):
                    respond(Self.answer(ready: false, "Redis answered PING with \(other)"))
                case .failure(let error):
                    respond(Self.answer(ready: false, error.description))
                }
            }
        }
    }

    private static func answer(ready: Bool, _ reason: String) -> HTTPResponse {
        HTTPResponse(status: ready ? 200 : 503, headers: [("content-type", "text/plain")],
                     body: Array((ready ? "ready\n" : "not ready: \(reason)\n").utf8))
    }
}
