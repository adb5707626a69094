import Codecs
import Foundation
import Testing
import TestSupport
@testable import RPC

@Suite struct RPCCodeTests {
    @Test func statusMapping() {
        let expected: [RPCCode: Int] = [
            .canceled: 499, .unknown: 500, .invalidArgument: 400, .deadlineExceeded: 504, .notFound: 404,
            .alreadyExists: 409, .permissionDenied: 403, .resourceExhausted: 429, .failedPrecondition: 400,
            .aborted: 409, .outOfRange: 400, .unimplemented: 501, .internal: 500, .unavailable: 503,
            .dataLoss: 500, .unauthenticated: 401,
        ]
        #expect(expected.count == RPCCode.allCases.count)
        for (code, status) in expected {
            #expect(code.httpStatus == status, "\(code)")
        }
        #expect(RPCCode.invalidArgument.rawValue == "invalid_argument")
        #expect(RPCCode.internal.rawValue == "internal")
    }

    @Test func errorBody() throws {
        let body = RPCError(.notFound, "card \"X\" not found\n").jsonBody()
        #expect(text(body) == #"{"code":"not_found","message":"card \"X\" not found\n"}"#)
        let parsed = try #require(try JSONParser.parse(body).objectValue)
        #expect(parsed["message"] == .string("card \"X\" not found\n"))
    }
}

@Suite struct ConnectUnaryTests {
    @Test(arguments: ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/json;charset=UTF-8",
                      "application/json ; charset = utf-8", " application/json ", "application/json; charset=\"utf-8\""])
    func acceptsJSONContentTypes(_ value: String) {
        #expect(ConnectUnary.isJSONContentType(value))
    }

    @Test(arguments: ["", "application/proto", "application/grpc+json", "text/json", "application/json; charset=latin1",
                      "application/jsonx", "application/json; boundary=x", "application/json;", "application/json; charset=utf-8; x=y",
                      "application/connect+json"])
    func rejectsOtherContentTypes(_ value: String) {
        #expect(!ConnectUnary.isJSONContentType(value))
    }

    @Test func timeoutDigits() {
        #expect(ConnectUnary.parseTimeoutMilliseconds("1") == 1)
        #expect(ConnectUnary.parseTimeoutMilliseconds("0500") == 500)
        #expect(ConnectUnary.parseTimeoutMilliseconds("9999999999") == 9_999_999_999)
        for bad in ["", "12345678901", "-1", "+1", "1.5", " 1", "1 ", "1e3", "١٢"] {
            #expect(ConnectUnary.parseTimeoutMilliseconds(bad) == nil, "\(bad)")
        }
    }

    let message = #"{"campaign":"Loyalty Campaign","member":"CARD+1/é"}"#

    func urlSafeBase64(_ bytes: [UInt8], padded: Bool) -> String {
        var encoded = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        if !padded { encoded = encoded.replacingOccurrences(of: "=", with: "") }
        return encoded
    }

    @Test func percentEncodedMessage() throws {
        let escaped = try #require(message.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        let query = try ConnectUnary.parseGetQuery("connect=v1&encoding=json&message=\(escaped)")
        #expect(query == ConnectGetQuery(message: Array(message.utf8), compression: nil))
    }

    @Test func plusDecodesToSpace() throws {
        let query = try ConnectUnary.parseGetQuery("message=%7B%22campaign%22%3A%22a+b%22%7D&encoding=json")
        #expect(text(query.message) == #"{"campaign":"a b"}"#)
    }

    @Test(arguments: [true, false])
    func base64Messages(_ padded: Bool) throws {
        // Lengths 0...5 cover every padding case.
        for length in 0...5 {
            let bytes = Array(message.utf8.prefix(length)) + Array(message.utf8)
            let query = try ConnectUnary.parseGetQuery("encoding=json&base64=1&message=\(urlSafeBase64(bytes, padded: padded))&compression=gzip")
            #expect(query.message == bytes)
            #expect(query.compression == "gzip")
        }
    }

    @Test func base64AcceptsStandardAlphabetAndPercentEncodedPadding() throws {
        let bytes: [UInt8] = [0xFB, 0xFF, 0xBF, 0x3E]
        #expect(Data(bytes).base64EncodedString() == "+/+/Pg==")
        #expect(try ConnectUnary.parseGetQuery("encoding=json&base64=1&message=%2B%2F%2B%2FPg%3D%3D").message == bytes)
        #expect(try ConnectUnary.parseGetQuery("encoding=json&base64=1&message=-_-_Pg").message == bytes)
        // An unescaped '+' arrives as a space after query decoding.
        #expect(try ConnectUnary.parseGetQuery("encoding=json&base64=1&message=+/+/Pg").message == bytes)
    }

    @Test(arguments: ["abc*", "a", "ab=c", "abc==", "ab===", "a===", "Pg=", "=="])
    func rejectsBadBase64(_ encoded: String) {
        #expect(rpcError { () throws(RPCError) in try ConnectUnary.parseGetQuery("encoding=json&base64=1&message=\(encoded)") }
            == invalid(#"query parameter "message" is not valid base64"#))
    }

    @Test func messageIsTakenLiterallyWithoutBase64One() throws {
        #expect(try ConnectUnary.parseGetQuery("encoding=json&base64=0&message=e30").message == Array("e30".utf8))
    }

    @Test func unknownParametersAndOrderDoNotMatter() throws {
        let query = try ConnectUnary.parseGetQuery("x=1&message=%7B%7D&&flag&connect=v1&encoding=json&compression=identity")
        #expect(query == ConnectGetQuery(message: Array("{}".utf8), compression: "identity"))
        #expect(try ConnectUnary.parseGetQuery("encoding=json&message=").message == [])
        #expect(try ConnectUnary.parseGetQuery("encoding=json&message=1&compression=").compression == nil)
    }

    @Test func missingOrWrongParameters() {
        func error(_ query: String) -> RPCError? {
            rpcError { () throws(RPCError) in try ConnectUnary.parseGetQuery(query) }
        }
        #expect(error("encoding=json") == invalid(#"missing query parameter "message""#))
        #expect(error("message=%7B%7D") == invalid(#"missing query parameter "encoding" (expected json or proto)"#))
        #expect(error("") == invalid(#"missing query parameter "encoding" (expected json or proto)"#))
        #expect(error("encoding=xml&message=x") == invalid(#"unsupported encoding "xml"; use json or proto"#))
        #expect((try? ConnectUnary.parseGetQuery("encoding=proto&message=x"))?.codec == .proto)
        #expect(error("encoding=JSON&message=x") != nil)
        #expect(error("encoding=json&message=%7") == invalid(#"malformed percent-encoding in query parameter "message""#))
        #expect(error("encoding=json&message=%zz") != nil)
        #expect(error("enc%ZZoding=json&message=x") == invalid("malformed percent-encoding in the query string"))
    }
}


func invalid(_ message: String) -> RPCError { RPCError(.invalidArgument, message) }
