import Logging
import Synchronization

/// A swift-log handler that keeps every entry, for tests that read what was logged and with
/// which fields.
public final class CapturedLog: Sendable {
    public struct Entry: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: Logger.Metadata

        /// A field's text, or nil when the entry has none.
        public subscript(_ field: String) -> String? { metadata[field].map { "\($0)" } }
    }

    private let storage = Mutex<[Entry]>([])

    public init() {}

    public var entries: [Entry] { storage.withLock { $0 } }

    public func entries(_ message: String) -> [Entry] { entries.filter { $0.message == message } }

    /// A logger whose entries at `level` and above land here.
    public func logger(label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ entry: Entry) { storage.withLock { $0.append(entry) } }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.append(Entry(level: event.level, message: event.message.description,
                             metadata: metadata.merging(event.metadata ?? [:]) { _, new in new }))
        }
    }
}
