import Foundation

/// Files of the package the tests were built from (proto-json/, Tests/clients/, the Python venv).
enum PackageFiles {
    /// This file is Tests/IntegrationTests/Support/PackageFiles.swift.
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func url(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }
}
