import Codecs
import HTTPServer

/// Which protocol carries a call and in which codec, read from the request's content type; and
/// how that protocol frames its answer. Pure.
struct CallShape {
    enum Wire: Equatable {
        case connect
        case grpc
        case grpcWeb
    }

    enum Verdict {
        case call(CallShape)
        /// Not a content type any protocol here speaks (HTTP 415).
        case unsupported(String)
    }

    let wire: Wire
    /// From the content type. Nil for a Connect GET (its query names the codec) and for a gRPC
    /// codec this server does not speak (answered UNIMPLEMENTED in the protocol, as gRPC asks).
    let codec: MessageCodec?
    /// The request's content type, echoed by gRPC answers (`application/grpc+proto` stays so).
    let contentType: String

    static func of(_ request: HTTPRequest) -> Verdict {
        // Only Connect has a GET form; its query, not a content type, names the codec.
        if request.method == "GET" { return .call(CallShape(wire: .connect, codec: nil, contentType: "")) }
        guard let contentType = request.header("content-type") else {
            return .unsupported("the request has no content-type; use application/json, application/proto, application/grpc or application/grpc-web")
        }
        return CallShape(contentType: contentType).map(Verdict.call)
            ?? .unsupported("content-type \"\(contentType)\" is not supported; use application/json, application/proto, application/grpc or application/grpc-web")
    }

    private init(wire: Wire, codec: MessageCodec?, contentType: String) {
        self.wire = wire
        self.codec = codec
        self.contentType = contentType
    }

    /// Nil when no protocol here speaks this content type.
    init?(contentType: String) {
        // What nearly every Connect caller sends: skip the general parse.
        if contentType == "application/json" {
            self.init(wire: .connect, codec: .json, contentType: contentType)
            return
        }
        if ConnectUnary.isJSONContentType(contentType) {
            self.init(wire: .connect, codec: .json, contentType: contentType)
            return
        }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { trimmingOWS($0).lowercased() } ?? ""
        if mediaType == "application/proto" {
            self.init(wire: .connect, codec: .proto, contentType: contentType)
            return
        }
        for (prefix, wire) in [("application/grpc-web", Wire.grpcWeb), ("application/grpc", Wire.grpc)] where mediaType.hasPrefix(prefix) {
            let suffix = mediaType.dropFirst(prefix.count)
            switch suffix {
            case "", "+proto": self.init(wire: wire, codec: .proto, contentType: contentType)
            case "+json": self.init(wire: wire, codec: .json, contentType: contentType)
            case _ where suffix.hasPrefix("+"): self.init(wire: wire, codec: nil, contentType: contentType)
            default: return nil
            }
            return
        }
        return nil
    }

    /// The protocol's name in logs and metrics.
    var carrier: RequestProtocol {
        switch wire {
        case .connect: .connect
        case .grpc: .grpc
        case .grpcWeb: .grpcWeb
        }
    }

    /// gRPC needs HTTP/2 (its status travels in trailers); over HTTP/1.1 it gets the 505.
    func needsHTTP2(over version: HTTPVersion) -> Bool { wire == .grpc && version != .http2 }

    /// The caller's deadline in milliseconds, or nil when it named none.
    func deadline(_ request: HTTPRequest) throws(RPCError) -> Int? {
        switch wire {
        case .connect:
            if let version = request.header("connect-protocol-version"), version != "1" {
                throw RPCError(.invalidArgument, "connect-protocol-version must be 1, got \"\(version)\"")
            }
            guard let raw = request.header("connect-timeout-ms") else { return nil }
            guard let milliseconds = ConnectUnary.parseTimeoutMilliseconds(raw) else {
                throw RPCError(.invalidArgument, "connect-timeout-ms must be 1 to 10 digits, got \"\(raw)\"")
            }
            return milliseconds
        case .grpc, .grpcWeb:
            guard let raw = request.header("grpc-timeout") else { return nil }
            guard let milliseconds = GRPCWire.parseTimeoutMilliseconds(raw) else {
                throw RPCError(.invalidArgument, "grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u, n), got \"\(raw)\"")
            }
            return milliseconds
        }
    }

    /// Whether the caller takes a gzip'd answer.
    func acceptsGzipResponse(_ request: HTTPRequest) -> Bool {
        switch wire {
        case .connect:
            return request.header("accept-encoding").map(ConnectUnary.acceptsGzip) ?? false
        case .grpc, .grpcWeb:
            return request.header("grpc-accept-encoding").map { value in
                value.split(separator: ",").contains { trimmingOWS($0).lowercased() == "gzip" }
            } ?? false
        }
    }

    /// A successful answer: `body` is the response message in `codec`, gzip'd when `compressed`.
    func successResponse(_ body: [UInt8], codec: MessageCodec, headers extra: [(name: String, value: String)], compressed: Bool) -> HTTPResponse {
        var headers: [(name: String, value: String)] = []
        // The content type, the encoding, and `x-request-id`, which the router adds.
        headers.reserveCapacity(extra.count + 3)
        switch wire {
        case .connect:
            headers.append(("content-type", codec == .json ? "application/json" : "application/proto"))
            headers.append(contentsOf: extra)
            if compressed { headers.append(("content-encoding", "gzip")) }
            return HTTPResponse(status: 200, headers: headers, body: body)
        case .grpc, .grpcWeb:
            headers.append(("content-type", contentType))
            headers.append(contentsOf: extra)
            if compressed { headers.append(("grpc-encoding", "gzip")) }
            var framed = GRPCWire.frame(body, flag: compressed ? 1 : 0)
            let status = [("grpc-status", "0")]
            guard wire == .grpcWeb else { return HTTPResponse(status: 200, headers: headers, body: framed, trailers: status) }
            framed.append(contentsOf: GRPCWire.webTrailerFrame(status))
            return HTTPResponse(status: 200, headers: headers, body: framed)
        }
    }

    /// A failed gRPC or gRPC-Web call: HTTP 200 with the status where the protocol reads it — a
    /// trailers-only answer for gRPC, the trailer frame for gRPC-Web.
    func errorResponse(_ error: RPCError) -> HTTPResponse {
        // The compressions this server reads, so a client refused for its encoding can pick another.
        var status = [("grpc-status", String(error.code.grpcStatus)), ("grpc-message", GRPCWire.percentEncodedMessage(error.message)),
                      ("grpc-accept-encoding", "gzip, identity")]
        if let seconds = error.retryAfterSeconds { status.append(("retry-after", String(seconds))) }
        let type = codec == nil ? (wire == .grpc ? "application/grpc" : "application/grpc-web") : contentType
        if wire == .grpcWeb {
            return HTTPResponse(status: 200, headers: [("content-type", type)], body: GRPCWire.webTrailerFrame(status))
        }
        return HTTPResponse(status: 200, headers: [("content-type", type)] + status)
    }
}
