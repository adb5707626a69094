import CSV
import Foundation
import Glibc

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

    /// The `error` of a member the job had not sent when the file was last written.
    public static let notStarted = "not_started"

    /// What the file holds while the job runs: every member `not_started`, so that a job killed
    /// before its end (SIGKILL, out of memory) leaves a file to run again from. Written at
    /// start-up, which also proves the path writable before any work is done.
    public static func notStartedRows(_ members: [String]) -> [[String]] {
        members.map { [$0, notStarted, "the job ended before this member was sent"] }
    }

    /// Replaces the file at `path` with `rows` atomically: a temporary file in the same directory
    /// (so on the same file system), renamed over it. A job killed while writing leaves the
    /// earlier file whole.
    public static func write(_ rows: [[String]], to path: String) throws(WarmUsageError) {
        let temporary = try createTemporaryFile(beside: path)
        var problem = writeAndSync(contents(rows), to: temporary.descriptor)
        close(temporary.descriptor)
        if problem == nil, rename(temporary.path, path) != 0 { problem = errno }
        if let problem {
            unlink(temporary.path)
            throw WarmUsageError("cannot write --failed-out file \(path): \(String(cString: strerror(problem)))")
        }
    }

    /// Writes every byte and flushes them to disk; the errno of what failed, nil when all went.
    private static func writeAndSync(_ bytes: [UInt8], to descriptor: Int32) -> Int32? {
        if let problem = writeAll(bytes[...], to: descriptor) { return problem }
        // On disk before the rename: a crash of the machine must not leave an empty file in its place.
        return fsync(descriptor) == 0 ? nil : errno
    }

    /// A new file next to `path`, named after it, created exclusively (a name someone else
    /// placed there, a symbolic link included, is never written through); mode 0666 less the
    /// umask, as any file the job creates.
    private static func createTemporaryFile(beside path: String) throws(WarmUsageError) -> (descriptor: Int32, path: String) {
        while true {
            let candidate = "\(path).tmp-\(UInt32.random(in: .min ... .max))"
            let descriptor = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if descriptor >= 0 { return (descriptor, candidate) }
            guard errno == EEXIST || errno == EINTR else {
                throw WarmUsageError("cannot write --failed-out file \(path): \(String(cString: strerror(errno)))")
            }
        }
    }
}
