internal import CCrypto
import Codecs

/// Voucherify's webhook signature: lowercase hex HMAC-SHA256, keyed by the webhook secret, of the
/// payload serialised without whitespace. OpenSSL's libcrypto computes the MAC and compares in
/// constant time.
public struct WebhookSigner: Sendable {
    /// The secret's bytes plus one spare zero byte, so the pointer handed to OpenSSL is never
    /// NULL even for an empty key (OpenSSL reads a NULL key as "reuse the previous one").
    private let paddedKey: [UInt8]
    private let keyLength: Int32
    public static let signatureBytes = 32

    public init(secret: String) {
        paddedKey = Array(secret.utf8) + [0]
        keyLength = Int32(paddedKey.count - 1)
    }

    /// The MAC of exactly these bytes.
    public func mac(_ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let messageLength = message.count
        // An empty array may have no storage; OpenSSL needs a real pointer even for zero bytes.
        let storage = message.isEmpty ? [0] : message
        let produced = paddedKey.withUnsafeBufferPointer { key in
            storage.withUnsafeBufferPointer { message in
                out.withUnsafeMutableBufferPointer { out in
                    HMAC(EVP_sha256(), key.baseAddress, keyLength, message.baseAddress, messageLength, out.baseAddress, &length)
                }
            }
        }
        // HMAC fails only when out of memory; an empty MAC then matches nothing.
        guard produced != nil, Int(length) == Self.signatureBytes else { return [] }
        return Array(out.prefix(Int(length)))
    }

    /// The `x-voucherify-signature` header Voucherify would send for `payload` as given.
    public func signature(of payload: [UInt8]) -> String {
        Hex.lowercase(mac(payload))
    }

    /// True when `header` is the signature of the body without whitespace, or of the raw body
    /// (a relay that re-serialised compactly and one that forwarded bytes untouched both pass).
    public func isValid(signature header: String, body: [UInt8]) -> Bool {
        guard let claimed = Hex.decode(header), claimed.count == Self.signatureBytes else { return false }
        let compact = WebhookPayload.removingWhitespace(body)
        // Both candidates are always computed and compared, so timing does not tell which matched.
        let compactMAC = mac(compact)
        let rawMAC = compact.count == body.count ? compactMAC : mac(body)
        let matchesCompact = Self.constantTimeEqual(claimed, compactMAC)
        let matchesRaw = Self.constantTimeEqual(claimed, rawMAC)
        return matchesCompact || matchesRaw
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, a.count == signatureBytes else { return false }
        return a.withUnsafeBytes { a in b.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 } }
    }
}
