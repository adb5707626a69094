internal import CNghttp2

/// The callback table and session options shared by every connection of one server. Each C
/// callback only recovers the connection from `user_data`, calls one method, and maps the result.
final class Nghttp2Callbacks {
    let pointer: OpaquePointer
    let options: OpaquePointer
    /// The data source's `ptr` is the stream (see HTTP2Connection.submit).
    /// The body stays with the stream (NO_COPY): `buffer` is never written; the send-data
    /// callback below stages each frame's payload.
    let readBody: nghttp2_data_source_read_callback = { _, _, _, length, flags, source, _ in
        guard let flags, let stream = source?.pointee.ptr else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        return Unmanaged<HTTP2Stream>.fromOpaque(stream)._withUnsafeGuaranteedRef {
            $0.readBody(capacity: length, flags: flags)
        }
    }

    init(configuration: HTTPServerConfiguration) throws {
        var callbacks: OpaquePointer?
        var rv = nghttp2_session_callbacks_new(&callbacks)
        guard rv == 0, let callbacks else { throw HTTPServerError("nghttp2_session_callbacks_new", code: Int(rv)) }
        var options: OpaquePointer?
        rv = nghttp2_option_new(&options)
        guard rv == 0, let options else {
            nghttp2_session_callbacks_del(callbacks)
            throw HTTPServerError("nghttp2_option_new", code: Int(rv))
        }
        pointer = callbacks
        self.options = options

        nghttp2_option_set_stream_reset_rate_limit(options, configuration.streamResetBurst, configuration.streamResetRatePerSecond)
        nghttp2_option_set_max_continuations(options, configuration.maxContinuations)
        nghttp2_option_set_max_settings(options, 32)
        nghttp2_option_set_max_outbound_ack(options, 1000)
        // Closed streams are kept only for priority bookkeeping we do not use.
        nghttp2_option_set_no_closed_streams(options, 1)

        nghttp2_session_callbacks_set_send_callback(callbacks) { _, data, length, _, userData in
            guard let userData, let data else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
            return withConnection(userData) { $0.send(data, length) }
        }
        // Only frames whose data source said NO_COPY come here. No padding callback is set, so
        // nghttp2 adds no padding and the frame is its 9-byte header and the payload.
        nghttp2_session_callbacks_set_send_data_callback(callbacks) { _, frame, header, length, source, userData in
            guard let userData, let frame, let header, let stream = source?.pointee.ptr, frame.pointee.data.padlen == 0 else {
                return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            }
            return withConnection(userData) { connection in
                Unmanaged<HTTP2Stream>.fromOpaque(stream)._withUnsafeGuaranteedRef { connection.sendData(header: header, length: length, of: $0) }
            }
        }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            guard let userData, let frame else { return 0 }
            if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                withConnection(userData) { $0.beginHeaders(streamID: frame.pointee.hd.stream_id) }
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            guard let userData, let frame, let name, let value else { return 0 }
            if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                withConnection(userData) { $0.header(streamID: frame.pointee.hd.stream_id, name: name, nameLength: nameLength,
                                            value: value, valueLength: valueLength) }
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            guard let userData, let frame else { return 0 }
            let header = frame.pointee.hd
            let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            let category = header.type == UInt8(NGHTTP2_HEADERS.rawValue) ? frame.pointee.headers.cat : NGHTTP2_HCAT_HEADERS
            withConnection(userData) { connection in
                switch Int(header.type) {
                case Int(NGHTTP2_HEADERS.rawValue) where category == NGHTTP2_HCAT_REQUEST:
                    connection.headersComplete(streamID: header.stream_id, endStream: endStream)
                case Int(NGHTTP2_HEADERS.rawValue) where endStream, Int(NGHTTP2_DATA.rawValue) where endStream:
                    // The request ends with its last DATA frame or with trailers (ignored).
                    connection.dataComplete(streamID: header.stream_id)
                case Int(NGHTTP2_PING.rawValue) where header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0:
                    connection.pingAcknowledged()
                default:
                    break
                }
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks) { _, _, _, userData in
            guard let userData else { return 0 }
            withConnection(userData) { $0.glitch() }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            guard let userData, let data else { return 0 }
            withConnection(userData) { $0.dataChunk(streamID: streamID, data: data, length: length) }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, _, userData in
            guard let userData else { return 0 }
            withConnection(userData) { $0.streamClosed(streamID: streamID) }
            return 0
        }
    }

    deinit {
        nghttp2_option_del(options)
        nghttp2_session_callbacks_del(pointer)
    }
}

/// Calls into the connection behind `user_data` without a retain/release pair: the server's
/// connection table keeps it alive for as long as nghttp2 can call back.
@inline(__always)
private func withConnection<R>(_ userData: UnsafeMutableRawPointer, _ body: (HTTP2Connection) -> R) -> R {
    Unmanaged<HTTP2Connection>.fromOpaque(userData)._withUnsafeGuaranteedRef(body)
}
