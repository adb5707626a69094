import ExpiryDomain
import HTTPClient
import Testing
@testable import Voucherify

@Suite struct ExportStatusTests {
    func parse(_ json: String) throws(VoucherifyError) -> ExportStatus {
        try ExportStatus(json: Array(json.utf8))
    }

    func malformedReason(_ json: String) -> String? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            guard case .malformed(let reason) = error else { return "not malformed: \(error)" }
            return reason
        }
    }

    @Test func aScheduledExportAsVoucherifyCreatesIt() throws {
        let status = try parse("""
            {"id":"exp_1","object":"export","created_at":"2024-07-09T08:00:00.000Z","status":"SCHEDULED","channel":"API",
             "exported_object":"points_expiration","parameters":{"order":"expires_at","fields":["id"]},"result":null,"user_id":null}
            """)
        #expect(status == ExportStatus(id: "exp_1", state: .scheduled))
    }

    @Test(arguments: [
        ("SCHEDULED", ExportStatus.State.scheduled), ("IN_PROGRESS", .inProgress), ("ERROR", .error),
        ("scheduled", .scheduled), ("In_Progress", .inProgress), ("error", .error),
        ("CANCELLED", .other("CANCELLED")), ("in progress", .other("in progress")),
    ])
    func statesAreReadInAnyCase(_ text: String, _ state: ExportStatus.State) throws {
        #expect(try parse(#"{"id":"exp_1","status":"\#(text)"}"#).state == state)
    }

    @Test func aDoneExportCarriesItsURL() throws {
        let url = "https://download.voucherify.io/v1/exports/exp_1/download?token=abc"
        #expect(try parse(#"{"id":"exp_1","status":"DONE","result":{"url":"\#(url)"}}"#)
            == ExportStatus(id: "exp_1", state: .done, resultURL: url))
        #expect(try parse(#"{"id":"exp_1","status":"done","result":{"url":"\#(url)"}}"#).state == .done)
    }

    @Test func aFailedExportKeepsVoucherifysMessageForTheLog() throws {
        #expect(try parse(#"{"id":"exp_1","status":"ERROR","result":{"message":"campaign too large"}}"#)
            == ExportStatus(id: "exp_1", state: .error, errorMessage: "campaign too large"))
        #expect(try parse(#"{"id":"exp_1","status":"ERROR","result":null}"#) == ExportStatus(id: "exp_1", state: .error))
        let long = String(repeating: "x", count: 1000)
        let message = try parse(#"{"id":"exp_1","status":"ERROR","result":{"message":"\#(long)"}}"#).errorMessage
        #expect(message == String(repeating: "x", count: VoucherifyFailure.maxLoggedMessageCharacters) + "…")
    }

    @Test func unknownFieldsAndAnOddResultAreIgnored() throws {
        #expect(try parse(#"{"status":"IN_PROGRESS","future":{"a":[1,2]},"id":"exp_2","result":"pending"}"#)
            == ExportStatus(id: "exp_2", state: .inProgress))
    }

    @Test(arguments: [
        (#"{"status":"DONE","result":{"url":"https://x/"}}"#, "export has no id"),
        (#"{"id":"","status":"SCHEDULED"}"#, "export has no id"),
        (#"{"id":7,"status":"SCHEDULED"}"#, "export has no id"),
        (#"{"id":"exp_1"}"#, "export has no status"),
        (#"{"id":"exp_1","status":""}"#, "export has no status"),
        (#"{"id":"exp_1","status":null}"#, "export has no status"),
        (#"{"id":"exp_1","status":"DONE"}"#, "export exp_1 is done but has no result url"),
        (#"{"id":"exp_1","status":"DONE","result":null}"#, "export exp_1 is done but has no result url"),
        (#"{"id":"exp_1","status":"DONE","result":{"url":""}}"#, "export exp_1 is done but has no result url"),
        (#"{"id":"exp_1","status":"DONE","result":{"url":42}}"#, "export exp_1 is done but has no result url"),
        (#"["exp_1"]"#, "export body is not an object"),
    ])
    func missingPartsAreMalformed(_ json: String, _ reason: String) {
        #expect(malformedReason(json) == reason)
    }

    @Test func aBodyThatIsNotJSONIsMalformed() {
        #expect(malformedReason("<html>502</html>")?.hasPrefix("export body is not JSON") == true)
        #expect(malformedReason("")?.hasPrefix("export body is not JSON") == true)
    }
}

@Suite struct ExportAnswerTests {
    let now = Timestamp(millisecondsSince1970: 1_700_000_000_000)
    let statusNotFound = VoucherifyError.rejectedRequest(status: 404, detail: "the export was not found")

    func response(_ status: Int, _ body: String = "", headers: [(String, String)] = []) -> HTTPClientResponse {
        HTTPClientResponse(status: status, headers: headers.map { (name: $0.0, value: $0.1) }, body: Array(body.utf8))
    }

    @Test func anExportObjectIsTheAnswer() throws {
        let answer = VoucherifyAPI.exportAnswer(response(200, #"{"id":"exp_1","status":"SCHEDULED"}"#), now: now, notFound: .campaignNotFound)
        #expect(answer.kind == .ok)
        #expect(try answer.result.get() == ExportStatus(id: "exp_1", state: .scheduled))
    }

    @Test func anUnreadable200IsMalformedAndNotRetried() {
        let answer = VoucherifyAPI.exportAnswer(response(200, #"{"id":"exp_1","status":"DONE"}"#), now: now, notFound: .campaignNotFound)
        #expect(answer.kind == .malformed)
        #expect(!answer.kind.isRetryable)
        #expect(answer.result.failure == .malformed("export exp_1 is done but has no result url"))
    }

    /// Whatever the body names, a 404 means the call's own resource: the campaign for the POST,
    /// the export for the GET (never "member not found").
    @Test func a404MeansWhatTheCallAsksFor() {
        let body = #"{"code":404,"key":"not_found","message":"Resource not found","resource_type":"voucher"}"#
        let create = VoucherifyAPI.exportAnswer(response(404, body), now: now, notFound: .campaignNotFound)
        #expect(create.kind == .notFound)
        #expect(create.result.failure == .campaignNotFound)
        #expect(create.upstreamMessage == "Resource not found")
        #expect(VoucherifyAPI.exportAnswer(response(404, "not json"), now: now, notFound: statusNotFound).result.failure == statusNotFound)
    }

    @Test func otherRefusalsAreClassifiedAsEveryCallsAre() {
        let limited = VoucherifyAPI.exportAnswer(response(429, headers: [("retry-after", "7")]), now: now, notFound: statusNotFound)
        #expect(limited.kind == .rateLimited)
        #expect(limited.result.failure == .rateLimited(retryAfterSeconds: 7))
        let down = VoucherifyAPI.exportAnswer(response(503, "upstream down"), now: now, notFound: statusNotFound)
        #expect(down.kind == .serverError)
        #expect(down.kind.isRetryable)
        #expect(down.result.failure == .unavailable("HTTP 503"))
        let keys = VoucherifyAPI.exportAnswer(response(401), now: now, notFound: statusNotFound)
        #expect(keys.kind == .rejectedCredentials)
        #expect(keys.result.failure == .rejectedCredentials(status: 401))
        #expect(VoucherifyAPI.exportAnswer(response(400), now: now, notFound: statusNotFound).result.failure
            == .rejectedRequest(status: 400, detail: "the request was malformed"))
    }

    @Test func aDownloadedFileIsASuccess() {
        let answer = VoucherifyAPI.downloadAnswer(response(200), now: now)
        #expect(answer.kind == .ok)
        #expect((try? answer.result.get()) != nil)
    }

    /// The keys worked for the export: a 401/403 from the download host is the URL's token,
    /// which expires. It is neither logged as bad credentials nor reported as them.
    @Test(arguments: [401, 403])
    func aRefusedDownloadTokenIsNotACredentialsProblem(_ status: Int) throws {
        let answer = VoucherifyAPI.downloadAnswer(response(status, #"{"code":401,"message":"token expired"}"#), now: now)
        #expect(answer.kind == .rejectedRequest)
        #expect(answer.kind.failureClass == .otherClientError)
        #expect(answer.kind.health == .healthy)
        #expect(answer.upstreamMessage == "token expired")
        let error = try #require(answer.result.failure)
        #expect(VoucherifyAPI.downloadError(error, receiverStopped: false) == .tokenRejected(status: status))
    }

    @Test func otherDownloadFailuresKeepTheirVoucherifyError() throws {
        let missing = try #require(VoucherifyAPI.downloadAnswer(response(404), now: now).result.failure)
        #expect(missing == .rejectedRequest(status: 404, detail: "the export file was not found"))
        #expect(VoucherifyAPI.downloadError(missing, receiverStopped: false) == .failed(missing))
        let down = try #require(VoucherifyAPI.downloadAnswer(response(502), now: now).result.failure)
        #expect(VoucherifyAPI.downloadError(down, receiverStopped: false) == .failed(.unavailable("HTTP 502")))
        // A 400 is a refused request too, but not the token's.
        let refused = try #require(VoucherifyAPI.downloadAnswer(response(400), now: now).result.failure)
        #expect(VoucherifyAPI.downloadError(refused, receiverStopped: false) == .failed(refused))
    }

    /// Stopped by its receiver, the transfer ends in a write error; what the caller hears is that it stopped.
    @Test func aStoppedReceiverIsItsOwnOutcome() throws {
        #expect(UpstreamCallKind(HTTPClientError.aborted) == .malformed)
        let error = try #require(CallAnswer<Void>(HTTPClientError.aborted).result.failure)
        #expect(VoucherifyAPI.downloadError(error, receiverStopped: true) == .receiverStopped)
        #expect(VoucherifyAPI.downloadError(.unavailable("HTTP 500"), receiverStopped: true) == .receiverStopped)
    }

    @Test func theExportAsksForEveryFieldByExpiryDate() {
        #expect(String(decoding: VoucherifyAPI.exportRequestBody, as: UTF8.self)
            == #"{"parameters":{"order":"expires_at","fields":["id","campaign_id","voucher_id","points","status","expires_at"]}}"#)
    }

    @Test func pathsEncodeTheirSegments() {
        #expect(UpstreamPath.pointsExpirationExport(campaign: "Loyalty Campaign/1")
            == "/v1/loyalties/Loyalty%20Campaign%2F1/points-expiration/export")
        #expect(UpstreamPath.pointsExpirationExport(campaign: "camp_1") == "/v1/loyalties/camp_1/points-expiration/export")
        #expect(UpstreamPath.export(id: "exp_1") == "/v1/exports/exp_1")
        #expect(UpstreamPath.export(id: "..") == "/v1/exports/%2E%2E")
        #expect(UpstreamPath.export(id: "a?b#c") == "/v1/exports/a%3Fb%23c")
    }
}

@Suite struct DownloadHostTests {
    func configuration(_ baseURL: String) throws -> VoucherifyConfiguration {
        try VoucherifyConfiguration(baseURL: baseURL, appID: "id", appToken: "token")
    }

    @Test(arguments: [
        ("https://api.voucherify.io", "https://download.voucherify.io"),
        ("https://us1.api.voucherify.io", "https://us1.download.voucherify.io"),
        ("https://as1.api.voucherify.io", "https://as1.download.voucherify.io"),
        ("https://api.voucherify.io/", "https://download.voucherify.io"),
        ("https://api.voucherify.io:8443", "https://download.voucherify.io:8443"),
        ("HTTPS://US1.API.Voucherify.io", "HTTPS://US1.download.Voucherify.io"),
        ("https://api.example.api.io", "https://download.example.api.io"),
        ("http://api:8090", "http://download:8090"),
        // No `api` label: the base URL itself.
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090"),
        ("http://[::1]:8090", "http://[::1]:8090"),
        ("https://proxy.example.com", "https://proxy.example.com"),
        ("https://myapi.example.com", "https://myapi.example.com"),
        ("https://api-eu.example.com", "https://api-eu.example.com"),
    ])
    func derivedFromTheBaseURL(_ baseURL: String, _ downloadBaseURL: String) throws {
        #expect(try configuration(baseURL).downloadBaseURL == downloadBaseURL)
    }

    @Test(arguments: [
        ("https://api.voucherify.io", "https://download.voucherify.io/v1/exports/exp_1/download?token=t"),
        ("https://api.voucherify.io", "HTTPS://Download.VOUCHERIFY.io/v1/exports/exp_1/download?token=t"),
        ("https://api.voucherify.io", "https://download.voucherify.io:443/x"),
        ("https://api.voucherify.io", "https://api.voucherify.io/v1/exports/exp_1/download"),
        ("https://api.voucherify.io", "https://download.voucherify.io"),
        ("https://us1.api.voucherify.io", "https://us1.download.voucherify.io/f?token=t"),
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090/v1/exports/exp_1/download?token=t"),
        ("http://fake", "http://FAKE:80/x"),
        ("http://[::1]:8090", "http://[::1]:8090/x"),
    ])
    func urlsOnTheConfiguredHostsAreFetched(_ baseURL: String, _ url: String) throws {
        try configuration(baseURL).checkDownloadURL(url)
    }

    @Test(arguments: [
        ("https://evil.example/v1/exports/exp_1/download?token=secret-token", "https://evil.example:443"),
        ("http://download.voucherify.io/x?token=secret-token", "http://download.voucherify.io:80"),
        ("https://download.voucherify.io:8443/x?token=secret-token", "https://download.voucherify.io:8443"),
        ("https://download.voucherify.io.evil.example/x?token=secret-token", "https://download.voucherify.io.evil.example:443"),
        ("https://us1.download.voucherify.io/x?token=secret-token", "https://us1.download.voucherify.io:443"),
    ])
    func otherHostsAreRefusedByName(_ url: String, _ named: String) throws {
        let error = try #require(throws: ExportDownloadError.self) { try configuration("https://api.voucherify.io").checkDownloadURL(url) }
        guard case .refusedURL(let why) = error else { throw TestFailure("expected a refused URL, got \(error)") }
        #expect(why.contains("points to \(named),"))
        #expect(why.contains("https://download.voucherify.io"))
        #expect(!why.contains("secret-token"))
    }

    @Test(arguments: [
        ("https://download.voucherify.io@evil.example/x?token=secret-token", "carries credentials"),
        ("https://user:pw@download.voucherify.io/x", "carries credentials"),
        (#"https://download.voucherify.io\@evil.example/x"#, "carries credentials"),
        (#"https://download.voucherify.io\.evil.example/x"#, "has a character no host name has"),
        ("https://download.voucherify.io%2Eevil.example/x", "has a character no host name has"),
        ("ftp://download.voucherify.io/x", "does not start with http:// or https://"),
        ("/v1/exports/exp_1/download?token=secret-token", "does not start with http:// or https://"),
        ("", "does not start with http:// or https://"),
        ("https:///x", "has no host"),
        ("https://download.voucherify.io:0/x", "has a bad port"),
        ("https://download.voucherify.io:/x", "has a bad port"),
        ("https://[::1/x", "has an unclosed IPv6 bracket"),
    ])
    func urlsWithoutAPlainOriginAreRefused(_ url: String, _ reason: String) throws {
        let error = try #require(throws: ExportDownloadError.self) { try configuration("https://api.voucherify.io").checkDownloadURL(url) }
        #expect(error == .refusedURL("the export download URL \(reason); not fetched"))
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
