import Codecs

/// Voucherify-style error bodies: `{"code","key","message","details","request_id"[,"resource_id","resource_type"]}`.
enum VoucherifyErrorBody {
    /// `v-` followed by 22 random lowercase alphanumerics, like Voucherify's request ids.
    static func requestId() -> String {
        "v-" + randomLowercaseAlphanumerics(22)
    }

    static func body(code: Int32, key: String, message: String, details: String,
                     resourceId: String? = nil, resourceType: String? = nil) -> JSONValue {
        var error: JSONObject = [
            "code": .integer(code),
            "key": .string(key),
            "message": .string(message),
            "details": .string(details),
            "request_id": .string(requestId()),
        ]
        if let resourceId { error.members.append(("resource_id", .string(resourceId))) }
        if let resourceType { error.members.append(("resource_type", .string(resourceType))) }
        return .object(error)
    }

    static func unauthorized(_ details: String) -> (Int32, JSONValue) {
        (401, body(code: 401, key: "unauthorized", message: "Unauthorized", details: details))
    }

    static func invalidQuery(_ details: String) -> (Int32, JSONValue) {
        (400, body(code: 400, key: "invalid_query_params", message: "Invalid query params", details: details))
    }

    /// 400 for a request body Voucherify refuses.
    static func invalidPayload(_ details: String) -> (Int32, JSONValue) {
        (400, body(code: 400, key: "invalid_payload", message: "Invalid payload", details: details))
    }

    /// 404 for a missing campaign (`resource_type: campaign`), card (`voucher`) or export (`export`).
    static func notFound(resourceType: String, id: String) -> (Int32, JSONValue) {
        (404, body(code: 404, key: "not_found", message: "Resource not found",
                   details: "Cannot find \(resourceType) with id \(id)", resourceId: id, resourceType: resourceType))
    }

    static func pathNotFound(_ path: String) -> (Int32, JSONValue) {
        (404, body(code: 404, key: "not_found", message: "Resource not found", details: "Cannot find resource at \(path)"))
    }

    static func methodNotAllowed(_ method: String, allowed: String) -> (Int32, JSONValue) {
        (405, body(code: 405, key: "method_not_allowed", message: "Method not allowed",
                   details: "Method \(method) is not allowed here; use \(allowed)"))
    }

    static func tooManyRequests(retryAfter: Int) -> (Int32, JSONValue) {
        (429, body(code: 429, key: "too_many_requests", message: "Too many requests",
                   details: "Rate limit exceeded; retry after \(retryAfter) seconds"))
    }

    /// A generic error for an injected non-5xx status without a body (403 forbidden and so on).
    static func generic(status: Int32) -> JSONValue {
        let key: String
        switch status {
        case 400: key = "bad_request"
        case 401: key = "unauthorized"
        case 403: key = "forbidden"
        case 404: key = "not_found"
        case 409: key = "duplicate_found"
        case 429: key = "too_many_requests"
        default: key = "error_\(status)"
        }
        return body(code: status, key: key, message: reasonPhrase(status), details: "Injected by fake-voucherify")
    }
}

/// `count` characters from 0-9a-z, from the system's random source: ids and tokens nobody can guess.
func randomLowercaseAlphanumerics(_ count: Int) -> String {
    let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
    var rng = SystemRandomNumberGenerator()
    return String((0..<count).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
}
