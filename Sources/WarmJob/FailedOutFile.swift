import CSV
import Foundation

/// The `--failed-out` file: a CSV with header `code,error,message`, one row per member that
/// failed or was left not done. Its `code` column makes it a valid `--members-file` for a re-run.
public enum FailedOutFile {
    public static let header = ["code", "error", "message"]

    /// The file's bytes (the CSV library quotes what needs quoting), ending with a newline.
    public static func contents(_ rows: [[String]]) -> [UInt8] {
        let stream = OutputStream(toMemory: ())
        // Writing to memory cannot fail: the writer throws only when its stream refuses bytes.
        guard let writer = try? CSVWriter(stream: stream) else { return [] }
        for row in [header] + rows { try? writer.write(row: row) }
        // Read while the writer, which closes the stream when it goes, is still here.
        let written = writer.stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data ?? Data()
        return Array(written) + [UInt8(ascii: "\n")]
    }

    /// Replaces the file at `path` with `rows`. At start-up with no rows, this proves the path
    /// is writable before any work is done, and leaves a valid file should the job die.
    public static func write(_ rows: [[String]], to path: String) throws(WarmUsageError) {
        do {
            try Data(contents(rows)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw WarmUsageError("cannot write --failed-out file \(path): \((error as NSError).localizedDescription)")
        }
    }
}
