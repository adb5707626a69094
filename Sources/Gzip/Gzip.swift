internal import CZlib

public enum GzipError: Error, Equatable, CustomStringConvertible {
    case malformed
    case tooLarge(limit: Int)

    public var description: String {
        switch self {
        case .malformed: return "body is not valid gzip"
        case .tooLarge(let limit): return "decompressed body exceeds \(limit) bytes"
        }
    }
}

/// gzip (RFC 1952) for Connect request and response bodies, over zlib. Each call owns its
/// z_stream from init to end within the call.
public enum Gzip {
    /// Window bits 15 + 16 selects the gzip wrapper in zlib.
    private static let gzipWindowBits: Int32 = 15 + 16

    /// Inflates `data`; stops with `.tooLarge` as soon as the output passes `limit` (zip bombs).
    public static func decompress(_ data: [UInt8], limit: Int) throws(GzipError) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, gzipWindowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .malformed
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var status: Int32 = Z_OK
        var input = data
        input.withUnsafeMutableBufferPointer { inputBuffer in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = UInt32(inputBuffer.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    output.append(contentsOf: out[0..<(out.count - Int(stream.avail_out))])
                }
            } while status == Z_OK && output.count <= limit && (stream.avail_in > 0 || stream.avail_out == 0)
        }
        if output.count > limit { throw .tooLarge(limit: limit) }
        // Trailing bytes after the gzip member, or a truncated stream, are both malformed.
        guard status == Z_STREAM_END, stream.avail_in == 0 else { throw .malformed }
        return output
    }

    public static func compress(_ data: [UInt8], level: Int32 = 6) -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, gzipWindowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            preconditionFailure("deflateInit2 with constant arguments cannot fail except out of memory")
        }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(data.count))))
        var input = data
        let produced = input.withUnsafeMutableBufferPointer { inputBuffer in
            output.withUnsafeMutableBufferPointer { out -> Int in
                stream.next_in = inputBuffer.baseAddress
                stream.avail_in = UInt32(inputBuffer.count)
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                // deflateBound guarantees one call finishes.
                let status = deflate(&stream, Z_FINISH)
                precondition(status == Z_STREAM_END, "deflate into a deflateBound-sized buffer must finish")
                return out.count - Int(stream.avail_out)
            }
        }
        output.removeSubrange(produced...)
        return output
    }
}
