/// Sends each request to the points-expiration API, the control API, or a 404/405.
struct Router {
    let api: PointsExpirationAPI
    let control: ControlAPI

    init(state: FakeState) {
        api = PointsExpirationAPI(state: state)
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
            guard request.method == .get else {
                let e = VoucherifyErrorBody.methodNotAllowed(request.method.rawValue, allowed: "GET")
                return .now(.json(e.0, e.1, headers: [("Allow", "GET")]))
            }
            return api.handle(request, campaign: segments[2], member: segments[4])
        }
        let e = VoucherifyErrorBody.pathNotFound(request.rawPath)
        return .now(.json(e.0, e.1))
    }
}
