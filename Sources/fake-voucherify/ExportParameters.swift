import Codecs

/// A column of the points-expiration export: the field name a request asks for, and the
/// human-readable label Voucherify's CSV header shows for it.
enum ExportField: String, CaseIterable {
    case id
    case campaignId = "campaign_id"
    case voucherId = "voucher_id"
    case points
    case status
    case expiresAt = "expires_at"

    var label: String {
        switch self {
        case .id: return "Id"
        case .campaignId: return "Campaign ID"
        case .voucherId: return "Voucher ID"
        case .points: return "Points"
        case .status: return "Status"
        case .expiresAt: return "Expires At"
        }
    }
}

/// Why an export request's body was refused: the `details` of a 400 `invalid_payload`.
struct ExportRequestError: Error {
    let details: String
}

/// The `parameters` of `POST /v1/loyalties/{campaign}/points-expiration/export`, checked:
/// `{"parameters":{"order":"expires_at"|"-expires_at","fields":[…],"filters":{…}}}`, every part
/// optional. `filters` is accepted and ignored: every bucket of the campaign is exported.
struct ExportParameters {
    enum Order: String, CaseIterable {
        case ascending = "expires_at"
        case descending = "-expires_at"
    }

    /// The CSV's columns in order: as asked, or every field when `fields` is absent or empty.
    let columns: [ExportField]
    /// nil: by member (card) code, then each card's buckets as served, then its expired ones.
    let order: Order?
    /// The parameters as the caller sent them (`{}` when none), echoed in the export object.
    let given: JSONValue

    static let maxDepth = 16

    init(body: [UInt8]) throws(ExportRequestError) {
        guard !body.isEmpty else {
            self.init(columns: ExportField.allCases, order: nil, given: .object([:]))
            return
        }
        let document: JSONValue
        do {
            document = try JSONParser.parseDocument(body, maxDepth: ExportParameters.maxDepth)
        } catch {
            throw ExportRequestError(details: "The request body is not valid JSON: \(error)")
        }
        guard let top = document.objectValue else { throw ExportRequestError(details: "The request body must be a JSON object") }
        guard let given = top["parameters"] else {
            self.init(columns: ExportField.allCases, order: nil, given: .object([:]))
            return
        }
        guard let parameters = given.objectValue else { throw ExportRequestError(details: "Property parameters must be an object") }
        self.init(columns: try ExportParameters.columns(parameters["fields"]), order: try ExportParameters.order(parameters["order"]),
                  given: given)
    }

    private init(columns: [ExportField], order: Order?, given: JSONValue) {
        self.columns = columns
        self.order = order
        self.given = given
    }

    private static func columns(_ fields: JSONValue?) throws(ExportRequestError) -> [ExportField] {
        guard let fields, fields != .null else { return ExportField.allCases }
        guard let names = fields.arrayValue else { throw ExportRequestError(details: "Property parameters.fields must be an array") }
        var columns: [ExportField] = []
        for (index, name) in names.enumerated() {
            guard let field = name.stringValue.flatMap(ExportField.init(rawValue:)) else {
                throw ExportRequestError(details: "Property parameters.fields[\(index)] should be one of: "
                    + ExportField.allCases.map(\.rawValue).joined(separator: ", "))
            }
            guard !columns.contains(field) else {
                throw ExportRequestError(details: "Property parameters.fields[\(index)] repeats \(field.rawValue)")
            }
            columns.append(field)
        }
        return columns.isEmpty ? ExportField.allCases : columns
    }

    private static func order(_ order: JSONValue?) throws(ExportRequestError) -> Order? {
        guard let order, order != .null else { return nil }
        guard let parsed = order.stringValue.flatMap(Order.init(rawValue:)) else {
            throw ExportRequestError(details: "Property parameters.order should be one of: "
                + Order.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return parsed
    }
}
