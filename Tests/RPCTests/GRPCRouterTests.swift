import Codecs
import Gzip
import HTTPServer
import SwiftProtobuf
import TestSupport
import Testing
@testable import RPC

private func structMessage(_ text: String) throws -> [UInt8] {
    try Google_Protobuf_Struct(fields: ["text": Google_Protobuf_Value(stringValue: text)]).serializedBytes()
}

private func echoed(_ payload: [UInt8], codec: MessageCodec = .proto) throws -> String? {
    let message = codec == .proto ? try Google_Protobuf_Struct(serializedBytes: payload) : try Google_Protobuf_Struct(jsonUTF8Bytes: payload)
    return message.fields["echo"]?.stringValue
}

extension RecordingWriter {
    func trailer(_ name: String) -> String? { response?.trailers.first { $0.name == name }?.value }
    /// The one message of a gRPC answer.
    var grpcPayload: [UInt8]? {
        guard let body = response?.body, body.count >= 5 else { return nil }
        return try? GRPCWire.unaryMessage(body, limit: 1 << 20).payload
    }
}

@Suite struct GRPCRouterTests {
    private func grpc(_ fixture: RouterFixture, path: String = "/test.v1.Echo/Echo", contentType: String = "application/grpc",
                      extra: [(name: String, value: String)] = [], body: [UInt8], version: HTTPVersion = .http2) -> RecordingWriter {
        let writer = RecordingWriter()
        let headers = HTTPHeaders([("content-type", contentType), ("te", "trailers")] + extra)
        fixture.router.handle(HTTPRequest(version: version, method: "POST", path: path, headers: headers, body: body), writer: writer)
        return writer
    }

    @Test func answersAUnaryCallWithStatusInTrailersAndMetadataInHeaders() throws {
        let fixture = try RouterFixture()
        let writer = grpc(fixture, body: GRPCWire.frame(try structMessage("hi"), flag: 0))
        #expect(writer.response?.status == 200)
        #expect(writer.header("content-type") == "application/grpc")
        #expect(writer.header("x-cache") == "hit")
        #expect(writer.trailer("grpc-status") == "0")
        #expect(try echoed(#require(writer.grpcPayload)) == "hi")
        #expect(fixture.outcomes["ok"] == 1)
    }

    @Test func speaksTheJSONCodecAndEchoesTheContentType() throws {
        let fixture = try RouterFixture()
        let writer = grpc(fixture, contentType: "application/grpc+json", body: GRPCWire.frame(Array(#"{"text":"j"}"#.utf8), flag: 0))
        #expect(writer.header("content-type") == "application/grpc+json")
        #expect(try echoed(#require(writer.grpcPayload), codec: .json) == "j")
    }

    @Test func acceptsGzipMessagesAndCompressesLargeAnswersWhenAsked() throws {
        let fixture = try RouterFixture()
        let long = String(repeating: "z", count: 1500)
        let writer = grpc(fixture, extra: [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "identity,deflate,gzip")],
                          body: GRPCWire.frame(Gzip.compress(try structMessage(long)), flag: 1))
        #expect(writer.trailer("grpc-status") == "0")
        #expect(writer.header("grpc-encoding") == "gzip")
        let body = try #require(writer.response?.body)
        #expect(body.first == 1)
        let (_, payload) = try GRPCWire.unaryMessage(body, limit: 1 << 20)
        #expect(try echoed(Gzip.decompress(payload, limit: 1 << 20)) == long)
    }

    /// Bad framing is answered with a status at once: the body is complete, so nothing waits.
    @Test(arguments: [
        ([UInt8](), 13), ([0, 0, 0], 13), ([0, 0, 0, 0, 9, 1], 13), ([0, 0, 0, 0, 1, 1, 7], 13), ([2, 0, 0, 0, 0], 13),
        ([0, 0, 0, 0x10, 0], 8), ([1, 0, 0, 0, 1, 0], 13),
    ] as [([UInt8], Int)])
    func malformedFramesGetAStatus(_ body: [UInt8], _ status: Int) throws {
        let fixture = try RouterFixture()
        let writer = grpc(fixture, body: body)
        #expect(writer.response?.status == 200)
        #expect(writer.header("grpc-status") == String(status))
        #expect(writer.response?.body.isEmpty == true)
    }

    @Test func errorsAreTrailersOnlyWithAPercentEncodedMessage() throws {
        let method = EchoMethod()
        method.scripted = .failure(RPCError(.resourceExhausted, "100% of the budget — wait", retryAfterSeconds: 20))
        let writer = grpc(try RouterFixture(method: method), body: GRPCWire.frame([], flag: 0))
        #expect(writer.response?.status == 200)
        #expect(writer.header("grpc-status") == "8")
        #expect(writer.header("grpc-message") == "100%25 of the budget %E2%80%94 wait")
        #expect(writer.header("retry-after") == "20")
        #expect(writer.response?.trailers.isEmpty == true)
    }

    @Test func unknownMethodsAndCodecsAreUnimplemented() throws {
        let fixture = try RouterFixture()
        let unknown = grpc(fixture, path: "/test.v1.Echo/Nope", body: GRPCWire.frame([], flag: 0))
        #expect(unknown.response?.status == 200)
        #expect(unknown.header("grpc-status") == "12")
        #expect(fixture.unknown["unimplemented"] == 1)
        let codec = grpc(fixture, contentType: "application/grpc+cbor", body: GRPCWire.frame([], flag: 0))
        #expect(codec.header("grpc-status") == "12")
        #expect(codec.header("content-type") == "application/grpc")
        let encoding = grpc(fixture, extra: [("grpc-encoding", "snappy")], body: GRPCWire.frame([1], flag: 1))
        #expect(encoding.header("grpc-status") == "12")
    }

    @Test func gRPCOverHTTP1IsRefusedNamingH2C() throws {
        let writer = grpc(try RouterFixture(), body: GRPCWire.frame([], flag: 0), version: .http1_1)
        #expect(writer.response?.status == 505)
        let explanation = text(writer.response?.body ?? [])
        #expect(explanation.contains("h2c"))
    }

    @Test func grpcTimeoutIsTheDeadline() throws {
        let fixture = try RouterFixture()
        let before = fixture.loop.monotonicMilliseconds
        _ = grpc(fixture, extra: [("grpc-timeout", "3S")], body: GRPCWire.frame([], flag: 0))
        let deadline = try #require(fixture.method.lastContext).deadline - before
        #expect((3000...3500).contains(deadline))
        let bad = grpc(fixture, extra: [("grpc-timeout", "1000000000S")], body: GRPCWire.frame([], flag: 0))
        #expect(bad.header("grpc-status") == "3")
    }

    @Test func gRPCWebPutsTheTrailersInTheBody() throws {
        let fixture = try RouterFixture()
        let writer = grpc(fixture, contentType: "application/grpc-web+proto", body: GRPCWire.frame(try structMessage("w"), flag: 0), version: .http1_1)
        #expect(writer.response?.status == 200)
        #expect(writer.header("content-type") == "application/grpc-web+proto")
        #expect(writer.response?.trailers.isEmpty == true)
        let body = try #require(writer.response?.body)
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        #expect(try echoed(Array(body[5..<(5 + length)])) == "w")
        let trailer = Array(body[(5 + length)...])
        #expect(trailer.first == GRPCWire.trailerFlag)
        #expect(text(Array(trailer.dropFirst(5))) == "grpc-status: 0\r\n")
    }

    @Test func connectSpeaksTheBinaryCodec() throws {
        let fixture = try RouterFixture()
        let writer = fixture.call("POST", path: fixture.method.path, query: nil, headers: [("content-type", "application/proto")],
                                  bytes: try structMessage("p"))
        #expect(writer.response?.status == 200)
        #expect(writer.header("content-type") == "application/proto")
        #expect(try echoed(#require(writer.response?.body)) == "p")
        // GET, as the official clients send it: URL-safe base64 of the gzip'd message.
        let encoded = base64URL(Gzip.compress(try structMessage("g")))
        let get = fixture.call("GET", query: "encoding=proto&base64=1&compression=gzip&connect=v1&message=\(encoded)", headers: [])
        #expect(get.header("content-type") == "application/proto")
        #expect(try echoed(#require(get.response?.body)) == "g")
        // Connect errors stay JSON whatever the codec.
        let bad = fixture.call("POST", path: fixture.method.path, query: nil, headers: [("content-type", "application/proto")], bytes: [0xFF])
        #expect(bad.response?.status == 400)
        #expect(bad.json?["code"] == .string("invalid_argument"))
    }
}

private func base64URL(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    var out = ""
    var index = 0
    while index < bytes.count {
        let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
        let value = chunk.enumerated().reduce(0) { $0 | Int($1.element) << (16 - 8 * $1.offset) }
        for position in 0...chunk.count { out.append(alphabet[(value >> (18 - 6 * position)) & 63]) }
        index += 3
    }
    return out
}

@Suite struct GRPCWireTests {
    @Test(arguments: [("1H", 3_600_000), ("2M", 120_000), ("3S", 3000), ("250m", 250), ("1500u", 2), ("1n", 1), ("0m", 0),
                      ("99999999H", GRPCWire.maxTimeoutMilliseconds)] as [(String, Int)])
    func parsesTimeouts(_ value: String, _ milliseconds: Int) {
        #expect(GRPCWire.parseTimeoutMilliseconds(value) == milliseconds)
    }

    @Test(arguments: ["", "S", "5", "123456789S", "5s", "-5S", "5 S", "5x"])
    func refusesMalformedTimeouts(_ value: String) {
        #expect(GRPCWire.parseTimeoutMilliseconds(value) == nil)
    }

    @Test func framesRoundTrip() throws {
        let framed = GRPCWire.frame([1, 2, 3], flag: 0)
        #expect(framed == [0, 0, 0, 0, 3, 1, 2, 3])
        #expect(try GRPCWire.unaryMessage(framed, limit: 3).payload == [1, 2, 3])
        #expect(rpcError { () throws(RPCError) in try GRPCWire.unaryMessage(framed, limit: 2) }?.code == .resourceExhausted)
    }
}
