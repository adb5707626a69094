internal import CNghttp2
internal import CSSL
import Synchronization

/// Why a certificate or key could not be used. Says which of the two files it was, so that the
/// service's configuration can name the variable that points at it.
public enum TLSError: Error, Equatable, CustomStringConvertible {
    case certificate(path: String, reason: String)
    case key(path: String, reason: String)
    /// OpenSSL refused something that does not depend on the files (out of memory, a bad build).
    case setup(String)

    public var description: String {
        switch self {
        case .certificate(let path, let reason): return "certificate \(path) cannot be used: \(reason)"
        case .key(let path, let reason): return "private key \(path) cannot be used: \(reason)"
        case .setup(let reason): return "TLS setup failed: \(reason)"
        }
    }
}

/// One server-side TLS setting: owns its `SSL_CTX` (certificate chain, private key, ALPN choosing
/// `h2` then `http/1.1`, TLS 1.2 at least, OpenSSL 3's defaults otherwise) and frees it in `deinit`.
///
/// Sendable: nothing changes it once built, and OpenSSL lets several threads make connections
/// from one `SSL_CTX` at once. Each connection's `SSL` holds its own reference to the context, so
/// connections made from a context that has since been replaced keep working.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer

    /// Reads both PEM files now (blocking file I/O: call it off the event loops).
    public init(certificateFile: String, keyFile: String) throws(TLSError) {
        // OpenSSL's error queue is per thread: entries left by an earlier failure on this thread
        // would otherwise be reported as this one's reason.
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw .setup("SSL_CTX_new: \(Self.drainErrors())") }
        // From here every failure reaches deinit, the one place the context is freed.
        pointer = context
        // SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
        guard SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil) == 1 else {
            throw .setup("setting TLS 1.2 as the minimum version: \(Self.drainErrors())")
        }
        // An encrypted key must fail to load, not make OpenSSL ask for a passphrase on the
        // terminal, which would hang start-up or a SIGHUP reload.
        SSL_CTX_set_default_passwd_cb(context) { _, _, _, _ in 0 }
        guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1 else {
            throw .certificate(path: certificateFile, reason: Self.drainErrors())
        }
        guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw .key(path: keyFile, reason: Self.drainErrors())
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .key(path: keyFile, reason: "does not match the certificate in \(certificateFile) (\(Self.drainErrors()))")
        }
        SSL_CTX_set_alpn_select_cb(context, { _, selected, selectedLength, offered, offeredLength, _ in
            guard let selected, let selectedLength, let offered else { return SSL_TLSEXT_ERR_ALERT_FATAL }
            var chosen: UnsafeMutablePointer<UInt8>?
            var chosenLength: UInt8 = 0
            // h2 if offered, else http/1.1 (nghttp2 walks the length-prefixed list within its
            // bounds). `chosen` points into the client's list, which OpenSSL keeps alive.
            guard nghttp2_select_next_protocol(&chosen, &chosenLength, offered, offeredLength) >= 0, let chosen else {
                // RFC 7301 §3.2: no protocol in common is a fatal no_application_protocol alert.
                return SSL_TLSEXT_ERR_ALERT_FATAL
            }
            selected.pointee = UnsafePointer(chosen)
            selectedLength.pointee = chosenLength
            return SSL_TLSEXT_ERR_OK
        }, nil)
    }

    deinit {
        SSL_CTX_free(pointer)
    }

    /// Every entry of this thread's OpenSSL error queue, oldest first, as one line.
    static func drainErrors() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 { reasons.append(describe(code)) }
        return reasons.isEmpty ? "no reason given by OpenSSL" : reasons.joined(separator: "; ")
    }

    /// One OpenSSL error code as text ("error:…:library::reason").
    static func describe(_ code: UInt) -> String {
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The TLS context new connections use, built from two files and replaced whole by `reload`
/// (SIGHUP). Shared by every worker: each takes `current` as it accepts a connection, so new
/// connections get the newest certificate and open ones keep the one they started with.
public final class TLSContextHolder: Sendable {
    public let certificateFile: String
    public let keyFile: String
    private let latest: Mutex<TLSContext>

    /// Loads both files now: a bad one stops start-up rather than the first handshake.
    public init(certificateFile: String, keyFile: String) throws(TLSError) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        latest = Mutex(try TLSContext(certificateFile: certificateFile, keyFile: keyFile))
    }

    public var current: TLSContext { latest.withLock { $0 } }

    /// Re-reads both files; on failure the current context stays in use and the error says why.
    public func reload() throws(TLSError) {
        let fresh = try TLSContext(certificateFile: certificateFile, keyFile: keyFile)
        latest.withLock { $0 = fresh }
    }
}
