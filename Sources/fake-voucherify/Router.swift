/// Sends each request to the points-expiration API, the export API, the control API, or a 404/405.
struct Router {
    let api: PointsExpirationAPI
    let exports: ExportAPI
    let control: ControlAPI

    init(state: FakeState) {
        api = PointsExpirationAPI(state: state)
        exports = ExportAPI(state: state)
        control = ControlAPI(state: state)
    }

    func route(_ request: IncomingRequest) -> Dispatch {
        if !request.rawPath.hasPrefix("/_fake/") { api.state.stats.sawPath(request.rawPath) }
        guard let segments = request.pathSegments else {
            let e = VoucherifyErrorBody.pathNotFound(request.rawPath)
            return .now(.json(e.0, e.1))
        }
        if segments.first == "_fake" {
            return control.handle(request, path: Array(segments.dropFirst()))
        }
        if segments.count == 6, segments[0] == "v1", segments[1] == "loyalties", segments[3] == "members",
           segments[5] == "points-expiration", !segments[2].isEmpty, !segments[4].isEmpty {
            return only(.get, request) { api.handle(request, campaign: segments[2], member: segments[4]) }
        }
        if segments.count == 5, segments[0] == "v1", segments[1] == "loyalties", segments[3] == "points-expiration",
           segments[4] == "export", !segments[2].isEmpty {
            return only(.post, request) { exports.create(request, campaign: segments[2]) }
        }
        if segments.count == 3, segments[0] == "v1", segments[1] == "exports", !segments[2].isEmpty {
            return only(.get, request) { exports.status(request, exportId: segments[2]) }
        }
        if segments.count == 4, segments[0] == "v1", segments[1] == "exports", segments[3] == "download", !segments[2].isEmpty {
            return only(.get, request) { exports.download(request, exportId: segments[2]) }
        }
        let e = VoucherifyErrorBody.pathNotFound(request.rawPath)
        return .now(.json(e.0, e.1))
    }

    /// `handle` for `method`, a Voucherify-style 405 naming it for any other.
    private func only(_ method: IncomingRequest.Method, _ request: IncomingRequest, _ handle: () -> Dispatch) -> Dispatch {
        guard request.method == method else {
            let e = VoucherifyErrorBody.methodNotAllowed(request.method.rawValue, allowed: method.rawValue)
            return .now(.json(e.0, e.1, headers: [("Allow", method.rawValue)]))
        }
        return handle()
    }
}
