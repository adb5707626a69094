import ExpiryDomain
import Foundation
import Logging
@testable import PointsExpiryServer
import Synchronization
import Testing

/// `LOG_FORMAT` and the JSON lines: each line parses as one object, with swift-log's metadata as
/// fields, merged in swift-log's order.
struct LogFormatTests {
    @Test(arguments: [
        (nil, true, LogFormat.text), (nil, false, .json), ("", true, .text), (" ", false, .json),
        ("json", true, .json), ("text", false, .text), ("JSON", false, .json), (" text ", true, .text),
    ] as [(String?, Bool, LogFormat)])
    func theSettingOrTheTerminalPicksTheFormat(setting: String?, logsToTerminal: Bool, expected: LogFormat) throws {
        #expect(try LogFormat(setting: setting, logsToTerminal: logsToTerminal) == expected)
    }

    @Test func anUnknownFormatIsAConfigurationErrorNamingLOG_FORMAT() {
        #expect(throws: ConfigurationError(variable: "LOG_FORMAT", problem: "must be text or json, got \"xml\"")) {
            try LogFormat(setting: "xml", logsToTerminal: false)
        }
    }

    @Test func aLineHasTheFixedFieldsThenTheMetadataSortedByKey() {
        let line = JSONLogHandler.line(timestamp: Timestamp(millisecondsSince1970: 1_767_225_600_123), level: .warning,
                                       label: "points-expiry", message: "Redis unavailable; retrying", source: "RedisClient",
                                       metadata: ["retry_ms": "100", "reason": "Connection refused"])
        #expect(String(decoding: line, as: UTF8.self) == """
            {"timestamp":"2026-01-01T00:00:00.123Z","level":"warning","logger":"points-expiry",\
            "message":"Redis unavailable; retrying","source":"RedisClient","reason":"Connection refused","retry_ms":"100"}

            """)
    }

    @Test func everyStringIsEscapedSoTheLineStaysOneJSONObject() throws {
        let nasty = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é 🙂"
        let line = JSONLogHandler.line(timestamp: Timestamp(millisecondsSince1970: 0), level: .info, label: "l\"abel",
                                       message: nasty, source: "s", metadata: ["k\ney": .string(nasty)])
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(!line.dropLast().contains(UInt8(ascii: "\n")), "a record must stay on one line")
        let object = try Self.parse(line)
        #expect(object["message"] as? String == nasty)
        #expect(object["logger"] as? String == "l\"abel")
        #expect(object["k\ney"] as? String == nasty)
    }

    @Test func nestedMetadataBecomesObjectsAndArrays() throws {
        let line = JSONLogHandler.line(timestamp: Timestamp(millisecondsSince1970: 0), level: .debug, label: "l", message: "m", source: "s",
                                       metadata: ["upstream": ["status": "503", "attempts": .stringConvertible(3)],
                                                  "members": ["A", "B"], "count": .stringConvertible(42)])
        let object = try Self.parse(line)
        #expect(object["upstream"] as? [String: String] == ["status": "503", "attempts": "3"])
        #expect(object["members"] as? [String] == ["A", "B"])
        #expect(object["count"] as? String == "42")
    }

    @Test func metadataNeverShadowsAFixedField() throws {
        let line = JSONLogHandler.line(timestamp: Timestamp(millisecondsSince1970: 0), level: .info, label: "l", message: "the message",
                                       source: "s", metadata: ["message": "from metadata", "level": "x"])
        let object = try Self.parse(line)
        #expect(object["message"] as? String == "the message")
        #expect(object["level"] as? String == "info")
        #expect(object["metadata.message"] as? String == "from metadata")
        #expect(object["metadata.level"] as? String == "x")
    }

    /// Through a Logger: the handler's metadata, then the provider's, then the call's, each
    /// overriding the one before; an error as `error.message` / `error.type`.
    @Test func handlerProviderAndCallMetadataMergeInSwiftLogsOrder() throws {
        let lines = Mutex<[[UInt8]]>([])
        let provider = Logger.MetadataProvider { ["request_id": "from-provider", "provided": "yes"] }
        var logger = Logger(label: "merge-test") { label in
            JSONLogHandler(label: label, metadataProvider: provider) { line in lines.withLock { $0.append(line) } }
        }
        logger.logLevel = .debug
        logger[metadataKey: "worker"] = "0"
        logger[metadataKey: "request_id"] = "from-handler"
        logger[metadataKey: "peer"] = "from-handler"
        logger.debug("first", metadata: ["peer": "127.0.0.1:5000"])
        logger.trace("below the level")
        logger.error("second", error: TestError(reason: "boom"))

        let written = lines.withLock { $0 }
        try #require(written.count == 2)
        let first = try Self.parse(written[0])
        #expect(first["worker"] as? String == "0")
        #expect(first["request_id"] as? String == "from-provider")
        #expect(first["provided"] as? String == "yes")
        #expect(first["peer"] as? String == "127.0.0.1:5000")
        #expect(first["logger"] as? String == "merge-test")
        #expect(first["level"] as? String == "debug")
        #expect(first["source"] as? String == "PointsExpiryServerTests")
        let second = try Self.parse(written[1])
        #expect(second["message"] as? String == "second")
        #expect(second["error.message"] as? String == "boom")
        #expect((second["error.type"] as? String)?.hasSuffix("TestError") == true)
        #expect(second["peer"] as? String == "from-handler")
        let timestamp = try #require(first["timestamp"] as? String)
        #expect(Timestamp(rfc3339: timestamp) != nil && timestamp.hasSuffix("Z") && timestamp.count == 24, "\(timestamp)")
    }

    private struct TestError: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    private static func parse(_ line: [UInt8]) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
    }
}
