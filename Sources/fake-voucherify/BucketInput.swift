import ExpiryDomain
import Foundation

/// The bucket format of the data file and of `PUT /_fake/members`.
/// Points may be given as `points` or in Voucherify's own shape `bucket.total_points`,
/// so a captured real answer can be pasted in.
struct BucketInput: Decodable {
    let id: String?
    let points: Int64
    let expiresAt: String?
    let status: String?
    let createdAt: String?
    let updatedAt: String?

    private enum Keys: String, CodingKey {
        case id, points, bucket, status
        case expiresAt = "expires_at", createdAt = "created_at", updatedAt = "updated_at"
    }
    private enum BucketKeys: String, CodingKey { case totalPoints = "total_points" }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id)
        if let p = try c.decodeIfPresent(Int64.self, forKey: .points) {
            points = p
        } else if c.contains(.bucket) {
            let nested = try c.nestedContainer(keyedBy: BucketKeys.self, forKey: .bucket)
            points = try nested.decode(Int64.self, forKey: .totalPoints)
        } else {
            throw DecodingError.keyNotFound(Keys.points, .init(codingPath: c.codingPath,
                debugDescription: "a bucket needs \"points\" (or \"bucket\":{\"total_points\":…})"))
        }
        expiresAt = try c.decodeIfPresent(String.self, forKey: .expiresAt)
        status = try c.decodeIfPresent(String.self, forKey: .status)
        createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
        updatedAt = try c.decodeIfPresent(String.self, forKey: .updatedAt)
    }
}

struct InputError: Error, CustomStringConvertible {
    let description: String
}

/// Turns input buckets into stored buckets: validates dates, fills defaults, keeps ids unique.
struct BucketBuilder {
    /// Default `created_at` for buckets that give none.
    let defaultCreatedAt: String
    private var counter = 0

    init(defaultCreatedAt: String) {
        self.defaultCreatedAt = defaultCreatedAt
    }

    mutating func build(_ inputs: [BucketInput], context: String, defaultStatus: String = "ACTIVE") throws -> [PointsBucket] {
        var seen = Set<String>()
        var result: [PointsBucket] = []
        result.reserveCapacity(inputs.count)
        for (index, input) in inputs.enumerated() {
            if let date = input.expiresAt, CalendarDate(iso: date) == nil {
                throw InputError(description: "\(context): bucket \(index) has expires_at \"\(date)\", expected YYYY-MM-DD")
            }
            let id: String
            if let given = input.id, !given.isEmpty {
                id = given
            } else {
                counter += 1
                id = "lopb_input_\(counter)"
            }
            guard seen.insert(id).inserted else {
                throw InputError(description: "\(context): bucket id \"\(id)\" appears twice")
            }
            result.append(PointsBucket(id: id, points: input.points, expiresAt: input.expiresAt,
                                       status: input.status ?? defaultStatus,
                                       createdAt: input.createdAt ?? defaultCreatedAt,
                                       updatedAt: input.updatedAt))
        }
        return result
    }
}

/// Short human text for a JSON decoding failure (which key, what went wrong).
func describeDecodingError(_ error: Error) -> String {
    func path(_ codingPath: [CodingKey]) -> String {
        codingPath.isEmpty ? "top level" : codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case DecodingError.keyNotFound(let key, let ctx):
        return "missing key \"\(key.stringValue)\" at \(path(ctx.codingPath))"
    case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
        return "wrong type at \(path(ctx.codingPath)): \(ctx.debugDescription)"
    case DecodingError.dataCorrupted(let ctx):
        return "invalid JSON at \(path(ctx.codingPath)): \(ctx.debugDescription)"
    default:
        return "\(error)"
    }
}
