import HTTPClient

/// Where Voucherify is and how the service authenticates to it.
public struct VoucherifyConfiguration: Sendable {
    /// `scheme://host[:port]`, no trailing slash, e.g. `https://api.voucherify.io`.
    public let baseURL: String
    public let appID: String
    public let appToken: String
    public var connectTimeoutMilliseconds = 2000
    /// One page request's own limit; a read's deadline may cut it shorter.
    public var requestTimeoutMilliseconds = 5000
    /// One export download's own limit (the file may be large); the caller's deadline may cut it
    /// shorter. Within it a download goes on as long as it keeps moving (`downloadStallLimit`).
    public var downloadTimeoutMilliseconds = 1_800_000
    /// A download slower than this for this long has stalled and ends.
    public var downloadStallLimit = StallLimit(bytesPerSecond: 1024, seconds: 60)
    public var retry = RetryPolicy()

    /// Validates `baseURL`: `http://` or `https://`, a host, an optional port, and no path,
    /// query or credentials (the client appends `/v1/...` itself, so a path such as `/v1` would
    /// turn every call into a misleading 404). One trailing slash is accepted.
    public init(baseURL: String, appID: String, appToken: String) throws(BaseURLError) {
        self.baseURL = try Self.validated(baseURL)
        self.appID = appID
        self.appToken = appToken
    }

    /// Why a base URL was refused; says what to write instead.
    public struct BaseURLError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    private static func validated(_ url: String) throws(BaseURLError) -> String {
        let lowered = url.lowercased()
        guard let scheme = ["http://", "https://"].first(where: { lowered.hasPrefix($0) }) else {
            throw BaseURLError(description: "must start with http:// or https://, got \"\(url)\"")
        }
        var authority = url.dropFirst(scheme.count)
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        if let slash = authority.firstIndex(of: "/") {
            throw BaseURLError(description: "must have no path (got \"\(authority[slash...])\"); give only scheme://host[:port], e.g. https://api.voucherify.io")
        }
        guard !authority.isEmpty else { throw BaseURLError(description: "has no host, got \"\(url)\"") }
        guard !authority.contains(where: { "?#@ \t\\".contains($0) }) else {
            throw BaseURLError(description: "must be scheme://host[:port] with no query, fragment, credentials or spaces, got \"\(url)\"")
        }
        do throws(URLOrigin.Invalid) {
            _ = try URLOrigin.split(authority: authority)
        } catch {
            throw BaseURLError(description: "\(error.reason), got \"\(url)\"")
        }
        return String(url.prefix(scheme.count)) + authority
    }

    /// Where Voucherify serves export files: the base URL with its host label `api` (the first,
    /// should there be several) turned into `download`, scheme and port kept
    /// (`https://us1.api.voucherify.io` → `https://us1.download.voucherify.io`); the base URL
    /// itself when its host has no such label (a local fake, a proxy).
    public var downloadBaseURL: String {
        guard let separator = baseURL.range(of: "://") else { return baseURL }
        let authority = baseURL[separator.upperBound...]
        guard let host = try? URLOrigin.split(authority: authority).host else { return baseURL }
        var labels = host.split(separator: ".", omittingEmptySubsequences: false)
        guard let api = labels.firstIndex(where: { $0.lowercased() == "api" }) else { return baseURL }
        labels[api] = "download"
        return baseURL[..<separator.upperBound] + labels.joined(separator: ".") + authority[host.endIndex...]
    }

    /// Refuses an export's download URL unless it points where this configuration sends its
    /// credentials: the download host or the API host (same scheme, host and port). Whatever an
    /// answer says, the app token goes nowhere else. The error names the host, never the URL
    /// (its query holds a token).
    func checkDownloadURL(_ url: String) throws(ExportDownloadError) {
        let origin: URLOrigin
        do throws(URLOrigin.Invalid) {
            origin = try URLOrigin(url: url)
        } catch {
            throw .refusedURL("the export download URL \(error.reason); not fetched")
        }
        let trusted = [downloadBaseURL, baseURL].compactMap { try? URLOrigin(url: $0) }
        guard trusted.contains(origin) else {
            throw .refusedURL("the export download URL points to \(origin), which is neither the download host (\(downloadBaseURL)) "
                + "nor the API host (\(baseURL)); not fetched, so the credentials are not sent there")
        }
    }

    /// `http://` peers get HTTP/1.1 (as any plain HTTP server expects); `https://` negotiates h2 by ALPN.
    var httpVersion: HTTPClientRequest.Version {
        baseURL.lowercased().hasPrefix("https://") ? .http2OverTLS : .http1
    }
}
