import Foundation

/// The fake's points-expiration export, called as a Voucherify client would (HTTP/1.1, the test
/// credentials unless `headers` says otherwise).
extension FakeVoucherify {
    static let authHeaders = ["X-App-Id: \(appID)", "X-App-Token: \(appToken)"]

    /// `POST …/points-expiration/export`. `campaign` is the path segment as sent (percent-encoded
    /// by the caller); `parameters` nil sends no body.
    func createExport(campaign: String = campaignID, parameters: [String: Any]? = nil,
                      headers: [String] = authHeaders) throws -> HTTPResult {
        let body = try parameters.map { try JSONSerialization.data(withJSONObject: ["parameters": $0]) }
        return try createExport(campaign: campaign, rawBody: body, headers: headers)
    }

    func createExport(campaign: String = campaignID, rawBody: Data?, headers: [String] = authHeaders) throws -> HTTPResult {
        try CurlClient.request("POST", "\(baseURL)/v1/loyalties/\(campaign)/points-expiration/export", body: rawBody,
                               headers: headers + ["content-type: application/json"], http2: false)
    }

    /// Creates an export and returns its id; fails the test on anything but a 200.
    func newExport(parameters: [String: Any]? = nil) throws -> String {
        let created = try createExport(parameters: parameters)
        guard created.status == 200, let id = created.json["id"] as? String else {
            throw TestFailure("export not created: \(created.status) \(created.text)")
        }
        return id
    }

    /// `GET /v1/exports/{id}`.
    func getExport(_ id: String, headers: [String] = authHeaders) throws -> HTTPResult {
        try CurlClient.request("GET", "\(baseURL)/v1/exports/\(id)", headers: headers, http2: false)
    }

    /// Polls the export until it is DONE or ERROR; returns each status it showed, in order
    /// (SCHEDULED first, as the creation answer says), and the final export object.
    func pollExport(_ id: String) throws -> (statuses: [String], export: [String: Any]) {
        var statuses = ["SCHEDULED"]
        var last: [String: Any] = [:]
        try waitUntil("export \(id) is finished") {
            let answer = try getExport(id)
            guard answer.status == 200 else { throw TestFailure("GET export \(id): \(answer.status) \(answer.text)") }
            last = answer.json
            let status = last["status"] as? String ?? "?"
            if status != statuses.last { statuses.append(status) }
            return status == "DONE" || status == "ERROR"
        }
        return (statuses, last)
    }

    /// A fresh download URL of a DONE export.
    func downloadURL(_ id: String) throws -> String {
        let export = try pollExport(id).export
        guard let url = (export["result"] as? [String: Any])?["url"] as? String else { throw TestFailure("no download URL: \(export)") }
        return url
    }

    func download(_ url: String, headers: [String] = authHeaders) throws -> HTTPResult {
        try CurlClient.request("GET", url, headers: headers, http2: false)
    }

    /// Creates an export with `parameters`, waits for it and downloads it; fails on anything but a CSV.
    func exportCSV(parameters: [String: Any]? = nil) throws -> (raw: HTTPResult, csv: CSVDocument) {
        let answer = try download(try downloadURL(try newExport(parameters: parameters)))
        guard answer.status == 200 else { throw TestFailure("download: \(answer.status) \(answer.text)") }
        return (answer, try CSVDocument(answer.body))
    }

    /// `POST /_fake/exports`; returns the fake's answer (the settings now).
    @discardableResult
    func exportSettings(_ body: [String: Any]) throws -> [String: Any] { try control("POST", "exports", body) }

    /// The `exports` counters of `GET /_fake/stats`.
    func exportStats() throws -> [String: Any] {
        guard let counts = try control("GET", "stats", nil)["exports"] as? [String: Any] else { throw TestFailure("fake stats without exports") }
        return counts
    }
}

/// A CSV body read as RFC 4180 says, strictly (a stray quote is an error): a UTF-8 BOM is
/// skipped, records end with CRLF (a bare LF or CR outside quotes is an error), quoted fields may
/// hold commas, doubled quotes and line breaks.
struct CSVDocument {
    let header: [String]
    let rows: [[String]]

    init(_ body: Data) throws {
        var bytes = [UInt8](body)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var records: [[String]] = []
        var record: [String] = []
        var field: [UInt8] = []
        var index = 0
        func byte(at i: Int) -> UInt8? { i < bytes.count ? bytes[i] : nil }
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\"") {
                guard field.isEmpty else { throw TestFailure("quote inside an unquoted field at byte \(index)") }
                index += 1
                while true {
                    guard let next = byte(at: index) else { throw TestFailure("unterminated quoted field") }
                    if next == UInt8(ascii: "\"") {
                        if byte(at: index + 1) == UInt8(ascii: "\"") {
                            field.append(next)
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    field.append(next)
                    index += 1
                }
                if let after = byte(at: index), after != UInt8(ascii: ","), after != 0x0D {
                    throw TestFailure("text after a closing quote at byte \(index)")
                }
                continue
            }
            switch bytes[index] {
            case UInt8(ascii: ","):
                record.append(String(decoding: field, as: UTF8.self))
                field = []
                index += 1
            case 0x0D:
                guard byte(at: index + 1) == 0x0A else { throw TestFailure("CR without LF at byte \(index)") }
                record.append(String(decoding: field, as: UTF8.self))
                records.append(record)
                record = []
                field = []
                index += 2
            case 0x0A:
                throw TestFailure("bare LF at byte \(index)")
            default:
                field.append(bytes[index])
                index += 1
            }
        }
        guard record.isEmpty, field.isEmpty else { throw TestFailure("the last record does not end with CRLF") }
        guard let header = records.first else { throw TestFailure("no header row") }
        self.header = header
        rows = Array(records.dropFirst())
    }

    /// The rows as dictionaries keyed by header label.
    var labelled: [[String: String]] {
        rows.map { Dictionary(uniqueKeysWithValues: zip(header, $0)) }
    }
}

/// Today's date in UTC as `YYYY-MM-DD`, as the fake's dates are.
func todayUTC() -> String {
    String(ISO8601DateFormatter().string(from: Date()).prefix(10))
}
