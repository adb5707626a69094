import Codecs
import ExpiryDomain
import Glibc
import Logging
import Synchronization

/// `LOG_FORMAT`: how log records are written to standard error, where the service logs.
public enum LogFormat: String, CaseIterable, Sendable {
    /// swift-log's `StreamLogHandler` line: `timestamp level label: key=value [source] message`.
    case text
    /// One JSON object per line (`JSONLogHandler`), for log collectors.
    case json

    /// `setting` is the variable as given; nil or blank means unset, which picks text when the logs
    /// go to a terminal (someone reads them) and JSON otherwise (something collects them).
    public init(setting: String?, logsToTerminal: Bool) throws(ConfigurationError) {
        let name = setting.map { $0.trimmingSpaces.lowercased() } ?? ""
        if name.isEmpty {
            self = logsToTerminal ? .text : .json
            return
        }
        guard let format = LogFormat(rawValue: name) else {
            throw ConfigurationError(variable: "LOG_FORMAT", problem: "must be text or json, got \"\(setting ?? "")\"")
        }
        self = format
    }

    /// The default for a process whose logs go to standard error.
    public static var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

/// A swift-log handler that writes each record as one line of JSON:
///
///     {"timestamp":"2026-05-01T10:00:00.123Z","level":"info","logger":"points-expiry",
///      "message":"points-expiry listening","source":"PointsExpiryServer","listen":"127.0.0.1:8080"}
///
/// `timestamp` is RFC 3339 UTC with milliseconds. Metadata follows the fixed fields as fields of
/// its own, sorted by key, merged as `StreamLogHandler` merges it (handler, then metadata
/// provider, then the call's; a record's error as `error.message` and `error.type`): strings stay
/// strings, `stringConvertible` values become their description, dictionaries nested objects and
/// arrays arrays. A metadata key that would shadow a fixed field is written as `metadata.<key>`, so
/// every line has exactly one of each fixed field.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    private let label: String
    private let output: @Sendable ([UInt8]) -> Void

    /// `output` receives each finished line, newline included.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, output: @escaping @Sendable ([UInt8]) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public static func standardError(label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) -> JSONLogHandler {
        JSONLogHandler(label: label, metadataProvider: metadataProvider, output: StandardError.writeLine)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, provided in provided } }
        if let explicit = event.metadata { merged.merge(explicit) { _, explicit in explicit } }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        output(Self.line(timestamp: .now(), level: event.level, label: label, message: event.message.description,
                         source: event.source, metadata: merged))
    }

    static let fixedFields: Set<String> = ["timestamp", "level", "logger", "message", "source"]

    /// One record as a JSON object and a newline.
    static func line(timestamp: Timestamp, level: Logger.Level, label: String, message: String, source: String,
                     metadata: Logger.Metadata) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.appendRaw(#"{"timestamp":"#)
        writer.appendTimestamp(timestamp)
        writer.appendRaw(#","level":"#)
        writer.appendString(level.rawValue)
        writer.appendRaw(#","logger":"#)
        writer.appendString(label)
        writer.appendRaw(#","message":"#)
        writer.appendString(message)
        writer.appendRaw(#","source":"#)
        writer.appendString(source)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            writer.appendRaw(byte: UInt8(ascii: ","))
            writer.appendString(fixedFields.contains(key) ? "metadata." + key : key)
            writer.appendRaw(byte: UInt8(ascii: ":"))
            append(value, to: &writer)
        }
        writer.appendRaw("}\n")
        return writer.bytes
    }

    private static func append(_ value: Logger.Metadata.Value, to writer: inout JSONWriter) {
        switch value {
        case .string(let string):
            writer.appendString(string)
        case .stringConvertible(let convertible):
            writer.appendString(convertible.description)
        case .dictionary(let dictionary):
            writer.appendRaw(byte: UInt8(ascii: "{"))
            for (index, (key, member)) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { writer.appendRaw(byte: UInt8(ascii: ",")) }
                writer.appendString(key)
                writer.appendRaw(byte: UInt8(ascii: ":"))
                append(member, to: &writer)
            }
            writer.appendRaw(byte: UInt8(ascii: "}"))
        case .array(let elements):
            writer.appendRaw(byte: UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { writer.appendRaw(byte: UInt8(ascii: ",")) }
                append(element, to: &writer)
            }
            writer.appendRaw(byte: UInt8(ascii: "]"))
        }
    }
}

/// Whole lines to standard error. The lock keeps lines from different threads apart: one
/// write(2) is atomic on a pipe only up to PIPE_BUF bytes, and a line with large metadata is longer.
private enum StandardError {
    private static let lock = Mutex(())

    @Sendable static func writeLine(_ line: [UInt8]) {
        lock.withLock { _ in
            line.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0, errno == EINTR {
                        continue
                    } else {
                        return  // a closed or broken stderr loses the line, never the process
                    }
                }
            }
        }
    }
}
