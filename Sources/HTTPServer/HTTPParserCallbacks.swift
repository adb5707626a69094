internal import CHttpParser

/// http-parser's callback table, shared by every HTTP/1.1 connection. Each C callback only
/// recovers the connection from `parser.data`, calls one method, and returns 0: a connection
/// that must stop parsing pauses the parser instead (http_parser_pause), which the parser allows
/// from inside a callback and which lets parsing resume where it stopped.
enum HTTPParserCallbacks {
    static let settings: http_parser_settings = {
        var settings = http_parser_settings()
        http_parser_settings_init(&settings)
        settings.on_message_begin = { parser in
            guard let parser else { return 0 }
            withConnection(parser) { $0.messageBegin() }
            return 0
        }
        settings.on_url = { parser, at, length in
            guard let parser, let at else { return 0 }
            withConnection(parser) { $0.target(bytes(at, length), parser) }
            return 0
        }
        settings.on_header_field = { parser, at, length in
            guard let parser, let at else { return 0 }
            withConnection(parser) { $0.headerName(bytes(at, length), parser) }
            return 0
        }
        settings.on_header_value = { parser, at, length in
            guard let parser, let at else { return 0 }
            withConnection(parser) { $0.headerValue(bytes(at, length), parser) }
            return 0
        }
        settings.on_headers_complete = { parser in
            guard let parser else { return 0 }
            withConnection(parser) { $0.headersComplete(parser) }
            return 0
        }
        settings.on_body = { parser, at, length in
            guard let parser, let at else { return 0 }
            withConnection(parser) { $0.bodyChunk(bytes(at, length), parser) }
            return 0
        }
        settings.on_message_complete = { parser in
            guard let parser else { return 0 }
            withConnection(parser) { $0.messageComplete(parser) }
            return 0
        }
        return settings
    }()
}

@inline(__always)
private func bytes(_ at: UnsafePointer<CChar>, _ length: Int) -> UnsafeBufferPointer<UInt8> {
    UnsafeBufferPointer(start: UnsafeRawPointer(at).assumingMemoryBound(to: UInt8.self), count: length)
}

/// Calls into the connection behind `parser.data` without a retain/release pair: the connection
/// is running http_parser_execute, so it is alive for as long as the parser can call back.
@inline(__always)
private func withConnection(_ parser: UnsafeMutablePointer<http_parser>, _ body: (HTTP1Connection) -> Void) {
    guard let data = parser.pointee.data else { return }
    Unmanaged<HTTP1Connection>.fromOpaque(data)._withUnsafeGuaranteedRef(body)
}
