import Foundation
import Testing
@testable import ExpiryCore

@Suite struct ConnectCodeTests {
    @Test func statusMapping() {
        let expected: [ConnectCode: Int] = [
            .canceled: 499, .unknown: 500, .invalidArgument: 400, .deadlineExceeded: 504, .notFound: 404,
            .alreadyExists: 409, .permissionDenied: 403, .resourceExhausted: 429, .failedPrecondition: 400,
            .aborted: 409, .outOfRange: 400, .unimplemented: 501, .internal: 500, .unavailable: 503,
            .dataLoss: 500, .unauthenticated: 401,
        ]
        #expect(expected.count == ConnectCode.allCases.count)
        for (code, status) in expected {
            #expect(code.httpStatus == status, "\(code)")
        }
        #expect(ConnectCode.invalidArgument.rawValue == "invalid_argument")
        #expect(ConnectCode.internal.rawValue == "internal")
    }

    @Test func errorBody() throws {
        let body = ConnectError(.notFound, "card \"X\" not found\n").jsonBody()
        #expect(text(body) == #"{"code":"not_found","message":"card \"X\" not found\n"}"#)
        let parsed = try #require(try JSONParser.parse(body).objectValue)
        #expect(parsed["message"] == .string("card \"X\" not found\n"))
    }
}

@Suite struct ExpiryErrorMappingTests {
    @Test(arguments: [
        (ExpiryError.invalidRequest("member is required"), ConnectCode.invalidArgument, "member is required"),
        (.campaignNotFound(campaign: "C"), .notFound, #"loyalty campaign "C" was not found in Voucherify"#),
        (.memberNotFound(campaign: "C", member: "M"), .notFound, #"loyalty card "M" was not found in campaign "C""#),
        (.upstreamUnavailable("HTTP 503"), .unavailable, "Voucherify is unavailable: HTTP 503"),
        (.upstreamRateLimited(retryAfterSeconds: 30), .resourceExhausted, "Voucherify rate limit reached; retry in 30 s"),
        (.upstreamRateLimited(retryAfterSeconds: nil), .resourceExhausted, "Voucherify rate limit reached; retry later"),
        (.upstreamRejectedRequest(status: 400, detail: "bad limit"), .internal, "Voucherify rejected the request (HTTP 400): bad limit"),
        (.upstreamMalformed("bucket 0: missing id"), .unavailable, "Voucherify sent an unreadable answer: bucket 0: missing id"),
        (.deadlineExceeded(milliseconds: 250), .deadlineExceeded, "the call's deadline of 250 ms was exceeded"),
        (.requestTooLarge(limit: 65536, what: "request body"), .resourceExhausted, "request body exceeds 65536 bytes"),
    ])
    func mapsToConnect(_ error: ExpiryError, _ code: ConnectCode, _ message: String) {
        #expect(error.connectError == ConnectError(code, message))
    }

    @Test func credentialsMessage() {
        let error = ExpiryError.upstreamRejectedCredentials(status: 401).connectError
        #expect(error.code == .internal)
        #expect(error.message.contains("HTTP 401"))
        #expect(error.message.contains("VOUCHERIFY_APP_ID") && error.message.contains("VOUCHERIFY_APP_TOKEN"))
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
        #expect(expiryError { () throws(ExpiryError) in try ConnectUnary.parseGetQuery("encoding=json&base64=1&message=\(encoded)") }
            == .invalidRequest(#"query parameter "message" is not valid base64"#))
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
        func error(_ query: String) -> ExpiryError? {
            expiryError { () throws(ExpiryError) in try ConnectUnary.parseGetQuery(query) }
        }
        #expect(error("encoding=json") == .invalidRequest(#"missing query parameter "message""#))
        #expect(error("message=%7B%7D") == .invalidRequest(#"missing query parameter "encoding" (expected encoding=json)"#))
        #expect(error("") == .invalidRequest(#"missing query parameter "encoding" (expected encoding=json)"#))
        #expect(error("encoding=proto&message=x") == .invalidRequest(#"unsupported encoding "proto"; only encoding=json is served"#))
        #expect(error("encoding=JSON&message=x") != nil)
        #expect(error("encoding=json&message=%7") == .invalidRequest(#"malformed percent-encoding in query parameter "message""#))
        #expect(error("encoding=json&message=%zz") != nil)
        #expect(error("enc%ZZoding=json&message=x") == .invalidRequest("malformed percent-encoding in the query string"))
    }
}

@Suite struct PercentEncodingTests {
    @Test func pathSegments() {
        #expect(PercentEncoding.pathSegment("Loyalty Campaign") == "Loyalty%20Campaign")
        #expect(PercentEncoding.pathSegment("a/b") == "a%2Fb")
        #expect(PercentEncoding.pathSegment("camp_1-A.b~") == "camp_1-A.b~")
        #expect(PercentEncoding.pathSegment("zł") == "z%C5%82")
        #expect(PercentEncoding.pathSegment("😀") == "%F0%9F%98%80")
        #expect(PercentEncoding.pathSegment("100%?#&+=") == "100%25%3F%23%26%2B%3D")
        #expect(PercentEncoding.pathSegment("..") == "..")
        #expect(PercentEncoding.pathSegment("") == "")
    }

    @Test func pathSegmentsRoundTripThroughDecoding() {
        for original in ["Loyalty Campaign", "a/b?c", "zażółć 😀", "%41+"] {
            let encoded = PercentEncoding.pathSegment(original)
            #expect(PercentEncoding.decodeQueryComponent(encoded.utf8) == Array(original.utf8))
        }
    }
}
