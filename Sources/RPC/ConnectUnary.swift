import Codecs

/// The decoded parameters of a Connect unary GET.
public struct ConnectGetQuery: Equatable, Sendable {
    /// The request message, percent- and base64-decoded but still compressed if `compression` says so.
    public var message: [UInt8]
    /// From `encoding=json|proto`.
    public var codec: MessageCodec
    public var compression: String?

    public init(message: [UInt8], codec: MessageCodec = .json, compression: String?) {
        self.message = message
        self.codec = codec
        self.compression = compression
    }
}

/// Pure pieces of the Connect unary protocol.
public enum ConnectUnary {
    /// `application/json`, optionally with `charset=utf-8`; case-insensitive, spaces allowed
    /// around the parameter.
    public static func isJSONContentType(_ value: String) -> Bool {
        // What nearly every caller sends: skip the general parse.
        if value == "application/json" { return true }
        let parts = value.lowercased().split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)
        guard trimmingOWS(parts[0]) == "application/json" else { return false }
        guard parts.count == 2 else { return true }
        let parameter = parts[1].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parameter.count == 2, trimmingOWS(parameter[0]) == "charset" else { return false }
        let charset = trimmingOWS(parameter[1])
        return charset == "utf-8" || charset == "\"utf-8\""
    }

    /// Whether an `accept-encoding` value admits gzip ("gzip;q=0" is an explicit refusal).
    public static func acceptsGzip(_ acceptEncoding: String) -> Bool {
        acceptEncoding.split(separator: ",").contains { part in
            let fields = part.split(separator: ";").map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
            guard fields.first == "gzip" else { return false }
            return !fields.dropFirst().contains { $0 == "q=0" || $0 == "q=0.0" || $0 == "q=0.00" || $0 == "q=0.000" }
        }
    }

    /// `connect-timeout-ms`: 1–10 ASCII digits, else nil (the header is then invalid).
    public static func parseTimeoutMilliseconds(_ value: String) -> Int? {
        let utf8 = value.utf8
        guard (1...10).contains(utf8.count), utf8.allSatisfy(isDigit) else { return nil }
        return Int(value)
    }

    /// Decodes a Connect GET query string (without the `?`). Parameters may come in any order and
    /// unknown ones are ignored; like connect-go, the first occurrence of a name counts and `+`
    /// decodes to a space.
    public static func parseGetQuery(_ query: String) throws(RPCError) -> ConnectGetQuery {
        var query = query
        // Over the query's contiguous bytes: walking a String's UTF-8 view generically cost more
        // than the rest of a hit (callgrind).
        return try query.withUTF8 { bytes in Result { () throws(RPCError) in try parseGetQuery(bytes) } }.get()
    }

    private static func parseGetQuery(_ query: UnsafeBufferPointer<UInt8>) throws(RPCError) -> ConnectGetQuery {
        var encoding: [UInt8]?
        var message: [UInt8]?
        var base64: [UInt8]?
        var compression: [UInt8]?
        for pair in query.split(separator: UInt8(ascii: "&")) {
            let pair = UnsafeBufferPointer(rebasing: pair)
            let nameEnd = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            guard let name = PercentEncoding.decodeQueryComponent(UnsafeBufferPointer(rebasing: pair[..<nameEnd])) else {
                throw RPCError(.invalidArgument, "malformed percent-encoding in the query string")
            }
            let rawValue = UnsafeBufferPointer(rebasing: nameEnd == pair.endIndex ? pair[nameEnd...] : pair[(nameEnd + 1)...])
            func value() throws(RPCError) -> [UInt8] {
                guard let decoded = PercentEncoding.decodeQueryComponent(rawValue) else {
                    throw RPCError(.invalidArgument, "malformed percent-encoding in query parameter \"\(String(decoding: name, as: UTF8.self))\"")
                }
                return decoded
            }
            if name.elementsEqual("encoding".utf8) {
                if encoding == nil { encoding = try value() }
            } else if name.elementsEqual("message".utf8) {
                if message == nil { message = try value() }
            } else if name.elementsEqual("base64".utf8) {
                if base64 == nil { base64 = try value() }
            } else if name.elementsEqual("compression".utf8) {
                if compression == nil { compression = try value() }
            }
        }
        guard let encoding else { throw RPCError(.invalidArgument, "missing query parameter \"encoding\" (expected json or proto)") }
        let codec: MessageCodec
        if encoding.elementsEqual("json".utf8) {
            codec = .json
        } else if encoding.elementsEqual("proto".utf8) {
            codec = .proto
        } else {
            throw RPCError(.invalidArgument, "unsupported encoding \"\(String(decoding: encoding, as: UTF8.self))\"; use json or proto")
        }
        guard var payload = message else { throw RPCError(.invalidArgument, "missing query parameter \"message\"") }
        if let base64, base64.elementsEqual("1".utf8) {
            guard let decoded = decodeBase64(payload) else {
                throw RPCError(.invalidArgument, "query parameter \"message\" is not valid base64")
            }
            payload = decoded
        }
        let compressionName = compression.map { String(decoding: $0, as: UTF8.self) }
        return ConnectGetQuery(message: payload, codec: codec, compression: compressionName?.isEmpty == false ? compressionName : nil)
    }
}

