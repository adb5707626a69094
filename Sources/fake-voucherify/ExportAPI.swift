import Codecs
import EventLoop
import ExpiryDomain

/// Voucherify's points-expiration export as the fake plays it:
/// `POST /v1/loyalties/{campaign}/points-expiration/export` makes one from the campaign's members
/// as they are now, `GET /v1/exports/{id}` tells its status (once DONE, with a download URL
/// holding a fresh token), `GET /v1/exports/{id}/download?token=` streams its CSV. Each is an API
/// call: counted in the rate-limit window, credentials checked, answered after the API latency.
/// Injected failures (`/_fake/fail`) and holds concern member reads only.
struct ExportAPI {
    let state: FakeState
    let gate: APIGate

    /// Bytes per streamed piece of a CSV: large enough to keep the socket busy, small enough
    /// that a slow reader holds little.
    static let pieceBytes = 128 * 1024
    static let maxHostLength = 255
    /// Names, IPv4 and bracketed IPv6 addresses, and a port.
    static let hostBytes = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]".utf8)

    init(state: FakeState) {
        self.state = state
        gate = APIGate(state: state)
    }

    func create(_ request: IncomingRequest, campaign: String) -> Dispatch {
        answer(request) { nowMs, headers in
            let parameters: ExportParameters
            do throws(ExportRequestError) {
                parameters = try ExportParameters(body: request.body)
            } catch {
                return .respond(ExportAPI.error(VoucherifyErrorBody.invalidPayload(error.details), headers))
            }
            guard let found = state.store.campaign(matching: campaign) else {
                return .respond(ExportAPI.error(VoucherifyErrorBody.notFound(resourceType: "campaign", id: campaign), headers))
            }
            let record = state.exports.create(campaign: found, parameters: parameters, nowMs: nowMs)
            state.stats.exportCreated(campaign: campaign)
            // Voucherify answers every new export as SCHEDULED, whatever the delay.
            return .respond(.json(200, record.json(status: .scheduled, downloadURL: nil), headers: headers))
        }
    }

    func status(_ request: IncomingRequest, exportId: String) -> Dispatch {
        state.stats.exportPolled()
        return answer(request) { nowMs, headers in
            guard let record = state.exports.export(id: exportId) else {
                return .respond(ExportAPI.error(VoucherifyErrorBody.notFound(resourceType: "export", id: exportId), headers))
            }
            let status = record.status(nowMs: nowMs)
            let url = status == .done ? downloadURL(record, request: request, nowMs: nowMs) : nil
            return .respond(.json(200, record.json(status: status, downloadURL: url), headers: headers))
        }
    }

    func download(_ request: IncomingRequest, exportId: String) -> Dispatch {
        let dispatch = answer(request) { nowMs, headers in
            guard let record = state.exports.export(id: exportId) else {
                return .respond(ExportAPI.error(VoucherifyErrorBody.notFound(resourceType: "export", id: exportId), headers))
            }
            switch record.check(token: request.queryValue("token"), nowMs: nowMs) {
            case .valid:
                break
            case .missing:
                return .respond(ExportAPI.error(VoucherifyErrorBody.unauthorized("Missing download token"), headers))
            case .unknown:
                return .respond(ExportAPI.error(VoucherifyErrorBody.unauthorized("Unknown download token for export \(exportId)"), headers))
            case .expired:
                return .respond(ExportAPI.error(VoucherifyErrorBody.unauthorized("Download token expired; get the export again for a fresh URL"), headers))
            }
            var csv = ExportCSV(table: record.table(), columns: record.parameters.columns)
            return .stream(StreamedResponse(status: 200, headers: [("Content-Type", "text/csv; charset=utf-8")] + headers) {
                csv.nextPiece(targetBytes: ExportAPI.pieceBytes)
            })
        }
        switch dispatch.action {
        case .stream: state.stats.exportDownloaded()
        case .respond(let refusal) where refusal.status != 429: state.stats.exportDownloadRejected()
        default: break
        }
        return dispatch
    }

    /// What every export call does first: count in the rate-limit window (a 429 when refused),
    /// check the credentials, then `respond` (given monotonic now and the rate-limit headers).
    /// The answer goes out after the API latency.
    private func answer(_ request: IncomingRequest,
                        _ respond: (_ nowMs: Int64, _ headers: [(String, String)]) -> Dispatch.Action) -> Dispatch {
        let wallMs = Timestamp.now().millisecondsSince1970
        let action: Dispatch.Action
        if let refused = gate.admit(nowMs: wallMs) {
            action = .respond(refused)
        } else if let problem = gate.credentialsProblem(appId: request.header("X-App-Id"), appToken: request.header("X-App-Token")) {
            action = .respond(ExportAPI.error(problem, state.rateLimit.headers(nowMs: wallMs)))
        } else {
            action = respond(Loop.monotonicMilliseconds(), state.rateLimit.headers(nowMs: wallMs))
        }
        return Dispatch(action: action, delayMs: state.defaultLatencyMs)
    }

    private static func error(_ e: (Int32, JSONValue), _ headers: [(String, String)]) -> OutgoingResponse {
        .json(e.0, e.1, headers: headers)
    }

    /// Where to download `record` with a freshly minted token: at the scheme, host and port the
    /// request came to, so a client that reached the fake by another name (a mapped port, a
    /// container name) can follow it.
    private func downloadURL(_ record: ExportRecord, request: IncomingRequest, nowMs: Int64) -> String {
        let token = record.mintToken(nowMs: nowMs, ttlMs: state.exports.settings.tokenTTLMs)
        return origin(of: request) + "/v1/exports/\(record.id)/download?token=\(token)"
    }

    /// `http://` and the request's Host; the listening address when Host is absent or anything
    /// but a plain `host[:port]` (it is copied into a URL).
    private func origin(of request: IncomingRequest) -> String {
        guard let host = request.header("Host"), !host.isEmpty, host.utf8.count <= ExportAPI.maxHostLength,
              host.utf8.allSatisfy(ExportAPI.hostBytes.contains) else { return state.listeningURL }
        return "http://" + host
    }
}
