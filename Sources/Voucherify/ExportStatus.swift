import Codecs

/// Where one Voucherify export stands: the export object that `POST …/export` creates and
/// `GET /v1/exports/{id}` reports (`{"id":"exp_…","object":"export","status":"DONE",
/// "result":{"url":"…"},…}`).
public struct ExportStatus: Equatable, Sendable {
    public enum State: Equatable, Sendable {
        case scheduled
        case inProgress
        case done
        case error
        /// A status Voucherify does not document, as sent.
        case other(String)

        /// Voucherify's `SCHEDULED`, `IN_PROGRESS`, `DONE`, `ERROR`, in any case.
        public init(_ status: String) {
            switch status.uppercased() {
            case "SCHEDULED": self = .scheduled
            case "IN_PROGRESS": self = .inProgress
            case "DONE": self = .done
            case "ERROR": self = .error
            default: self = .other(status)
            }
        }
    }

    public var id: String
    public var state: State
    /// Where the file is, once done. It carries a token in its query: never log it.
    public var resultURL: String?
    /// Voucherify's explanation of a failed export, truncated; for the log only.
    public var errorMessage: String?

    public init(id: String, state: State, resultURL: String? = nil, errorMessage: String? = nil) {
        self.id = id
        self.state = state
        self.resultURL = resultURL
        self.errorMessage = errorMessage
    }

    /// Reads an export object. `malformed` when it has no id or status, or is done without a
    /// URL; unknown fields are ignored, and so is a `result` of an unexpected shape (only a done
    /// export needs one).
    public init(json: [UInt8]) throws(VoucherifyError) {
        let document: JSONValue
        do {
            document = try JSONParser.parseDocument(json, maxDepth: 64)
        } catch {
            throw .malformed("export body is not JSON (\(error))")
        }
        guard case .object(let object) = document else { throw .malformed("export body is not an object") }
        guard let id = object["id"]?.stringValue, !id.isEmpty else { throw .malformed("export has no id") }
        guard let status = object["status"]?.stringValue, !status.isEmpty else { throw .malformed("export has no status") }
        let result = object["result"]?.objectValue
        self.id = id
        state = State(status)
        resultURL = result?["url"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        errorMessage = result?["message"]?.stringValue.map(Self.truncatedForLog)
        if state == .done, resultURL == nil { throw .malformed("export \(id) is done but has no result url") }
    }

    private static func truncatedForLog(_ text: String) -> String {
        let limit = VoucherifyFailure.maxLoggedMessageCharacters
        return text.count > limit ? String(text.prefix(limit)) + "…" : text
    }
}
