import Foundation

/// One HTTP exchange made with the curl command-line client.
struct HTTPResult {
    let status: Int
    /// Lowercased names; the last value wins.
    let headers: [String: String]
    let body: Data
    let httpVersion: String

    var text: String { String(decoding: body, as: UTF8.self) }

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    /// The Connect error code of an error response.
    var code: String? { json["code"] as? String }
}

enum CurlClient {
    /// `http2` true: HTTP/2 prior knowledge (h2c); false: HTTP/1.1 (for the fake Voucherify).
    static func request(_ method: String, _ url: String, body: Data? = nil, headers: [String] = [],
                        http2: Bool = true, timeoutSeconds: Double = 15) throws -> HTTPResult {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pe-curl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let headerFile = directory.appendingPathComponent("headers").path
        let bodyFile = directory.appendingPathComponent("body").path
        let errorFile = directory.appendingPathComponent("stderr").path
        // `-X HEAD` would make curl wait for a body that never comes; `--head` knows there is none.
        let methodArguments = method == "HEAD" ? ["--head"] : ["-X", method]
        var arguments = ["-sS", "--stderr", errorFile, http2 ? "--http2-prior-knowledge" : "--http1.1"] + methodArguments + ["-D", headerFile, "-o", bodyFile,
                         "-w", "%{http_code} %{http_version}", "--max-time", String(timeoutSeconds)]
        for header in headers { arguments += ["-H", header] }
        if let body {
            let requestFile = directory.appendingPathComponent("request").path
            try body.write(to: URL(fileURLWithPath: requestFile))
            arguments += ["--data-binary", "@\(requestFile)"]
        }
        let summary = try run("/usr/bin/curl", arguments + [url]).split(separator: " ")
        guard summary.count == 2, let status = Int(summary[0]), status > 0 else {
            let error = ((try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            throw TestFailure("curl \(method) \(url) got no HTTP answer: \(error)")
        }
        var parsed: [String: String] = [:]
        let rawHeaders = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
        for line in rawHeaders.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let responseBody = FileManager.default.contents(atPath: bodyFile) ?? Data()
        return HTTPResult(status: status, headers: parsed, body: responseBody, httpVersion: String(summary[1]))
    }
}

/// A GetMemberExpirationRequest in binary protobuf (campaign = field 1, member = field 2, both
/// shorter than 128 bytes) as one gRPC message: what a gRPC client sends for that call.
func grpcGetMemberExpirationFrame(campaign: String, member: String) -> Data {
    func field(_ number: UInt8, _ text: String) -> [UInt8] { [number << 3 | 2, UInt8(text.utf8.count)] + Array(text.utf8) }
    let message = field(1, campaign) + field(2, member)
    return Data([0, 0, 0, 0, UInt8(message.count)] + message)
}

