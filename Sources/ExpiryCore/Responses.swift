/// Builds a `BatchGetMemberExpirations` response, `{"results":[…]}`, splicing in member bodies
/// as they come from the cache instead of re-encoding them.
public struct BatchResponseWriter {
    private var writer: JSONWriter
    private var isEmpty = true

    public init(capacity: Int = 4096) {
        writer = JSONWriter(capacity: capacity)
        writer.appendRaw("{\"results\":[")
    }

    /// `body` is a complete `MemberExpiration` object (`CachedAnswer.responseBody`).
    public mutating func appendExpiration(member: String, body: [UInt8]) {
        beginResult(member: member)
        writer.appendRaw(",\"expiration\":")
        writer.appendRaw(body)
        writer.appendRaw(byte: UInt8(ascii: "}"))
    }

    public mutating func appendError(member: String, error: ConnectError) {
        beginResult(member: member)
        writer.appendRaw(",\"error\":")
        error.appendJSON(to: &writer)
        writer.appendRaw(byte: UInt8(ascii: "}"))
    }

    public func finished() -> [UInt8] {
        var result = writer
        result.appendRaw("]}")
        return result.bytes
    }

    private mutating func beginResult(member: String) {
        if !isEmpty { writer.appendRaw(byte: UInt8(ascii: ",")) }
        isEmpty = false
        writer.appendRaw("{\"member\":")
        writer.appendString(member)
    }
}

/// One member `WarmMembers` could not warm.
public struct WarmFailure: Equatable, Sendable {
    public var member: String
    public var error: ConnectError

    public init(member: String, error: ConnectError) {
        self.member = member
        self.error = error
    }
}

public struct WarmMembersResponse: Equatable, Sendable {
    public var requested: Int32
    public var warmed: Int32
    public var alreadyFresh: Int32
    public var failed: [WarmFailure]

    public init(requested: Int32, warmed: Int32, alreadyFresh: Int32, failed: [WarmFailure]) {
        self.requested = requested
        self.warmed = warmed
        self.alreadyFresh = alreadyFresh
        self.failed = failed
    }

    /// `{"requested":N,"warmed":N,"alreadyFresh":N,"failed":[{"member","code","message"}]}`
    public func protoJSON() -> [UInt8] {
        var w = JSONWriter(capacity: 96 + failed.count * 96)
        w.appendRaw("{\"requested\":")
        w.appendNumber(Int64(requested))
        w.appendRaw(",\"warmed\":")
        w.appendNumber(Int64(warmed))
        w.appendRaw(",\"alreadyFresh\":")
        w.appendNumber(Int64(alreadyFresh))
        w.appendRaw(",\"failed\":[")
        for (i, failure) in failed.enumerated() {
            if i > 0 { w.appendRaw(byte: UInt8(ascii: ",")) }
            w.appendRaw("{\"member\":")
            w.appendString(failure.member)
            w.appendRaw(",\"code\":")
            w.appendString(failure.error.code.rawValue)
            w.appendRaw(",\"message\":")
            w.appendString(failure.error.message)
            w.appendRaw(byte: UInt8(ascii: "}"))
        }
        w.appendRaw("]}")
        return w.bytes
    }
}

public enum InvalidateMemberResponse {
    /// `{"invalidated":true|false}`
    public static func protoJSON(invalidated: Bool) -> [UInt8] {
        Array((invalidated ? #"{"invalidated":true}"# : #"{"invalidated":false}"#).utf8)
    }
}
