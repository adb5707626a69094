import Logging
import RedisClient

extension Logger {
    /// A Redis outcome that is not what the script or command returns, in words safe for any log
    /// line or caller: never Redis' own text, which can echo scripts, keys and arguments. The raw
    /// reply goes to this logger at debug, truncated.
    func summarise(_ result: Result<RedisReply, RedisError>) -> String {
        switch result {
        case .success(.error(let message)):
            return summarise(RedisError.server(message))
        case .success(let other):
            debug("unexpected Redis reply", metadata: ["reply": "\(RedisErrorSummary.truncated("\(other)"))"])
            return "unexpected reply from Redis"
        case .failure(let error):
            return summarise(error)
        }
    }

    func summarise(_ error: RedisError) -> String {
        if let raw = error.rawReplyForLog { debug("Redis error reply", metadata: ["reply": "\(raw)"]) }
        return error.description
    }
}
