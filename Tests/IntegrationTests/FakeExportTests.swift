import ExpiryDomain
import Foundation
import Testing

/// The fake Voucherify's points-expiration export: create, poll, download, against the real binary.
@Suite(.serialized) struct FakeExportTests {
    private static let labels = ["Id", "Campaign ID", "Voucher ID", "Points", "Status", "Expires At"]

    @Test func exportGoesFromScheduledThroughInProgressToDone() throws {
        let fake = try FakeVoucherify(arguments: ["--export-delay-ms", "1500"])
        var created: [String: Any] = [:]
        var polled: (statuses: [String], export: [String: Any]) = ([], [:])
        // IN_PROGRESS lasts 750 ms: on a machine too slow to poll within that, start again.
        try waitUntil("polls see an export IN_PROGRESS") {
            let answer = try fake.createExport()
            #expect(answer.status == 200)
            created = answer.json
            polled = try fake.pollExport(try #require(created["id"] as? String))
            return polled.statuses != ["SCHEDULED", "DONE"]
        }
        #expect(polled.statuses == ["SCHEDULED", "IN_PROGRESS", "DONE"])

        #expect(created["status"] as? String == "SCHEDULED")
        #expect(created["result"] is NSNull)
        #expect((created["id"] as? String)?.hasPrefix("exp_") == true)
        let done = polled.export
        for key in ["id", "created_at"] { #expect(done[key] as? String == created[key] as? String) }
        #expect(done["object"] as? String == "export")
        #expect(done["channel"] as? String == "API")
        #expect(done["exported_object"] as? String == "points_expiration")
        #expect((done["parameters"] as? [String: Any])?.isEmpty == true)
        #expect(done["user_id"] is NSNull)
        #expect(Timestamp(rfc3339: done["created_at"] as? String ?? "") != nil)
        let url = try #require((done["result"] as? [String: Any])?["url"] as? String)
        #expect(url.hasPrefix("\(fake.baseURL)/v1/exports/\(done["id"] as? String ?? "")/download?token="))
        // Every poll of a DONE export mints a fresh token.
        #expect(try fake.downloadURL(done["id"] as? String ?? "") != url)
    }

    @Test func failNextEndsThatManyExportsInError() throws {
        let fake = try FakeVoucherify()
        let settings = try fake.exportSettings(["delay_ms": 100, "fail_next": 1])
        #expect(settings["delay_ms"] as? Int == 100)
        #expect(settings["fail_next"] as? Int == 1)
        #expect(settings["token_ttl_ms"] as? Int == 300_000)

        let failing = try fake.pollExport(try fake.newExport())
        #expect(failing.statuses == ["SCHEDULED", "IN_PROGRESS", "ERROR"] || failing.statuses == ["SCHEDULED", "ERROR"])
        let result = try #require(failing.export["result"] as? [String: Any])
        #expect((result["message"] as? String)?.isEmpty == false)
        #expect(result["url"] == nil)
        #expect(try fake.control("GET", "exports", nil)["fail_next"] as? Int == 0)
        #expect(try fake.pollExport(try fake.newExport()).export["status"] as? String == "DONE")

        // Bad settings change nothing.
        #expect(throws: TestFailure.self) { try fake.exportSettings(["delay_ms": -1]) }
        #expect(throws: TestFailure.self) { try fake.exportSettings(["token_ttl_ms": 0]) }
        #expect(throws: TestFailure.self) { try fake.exportSettings(["delay_ms": 10, "fail_next": -1]) }
        #expect(try fake.control("GET", "exports", nil)["delay_ms"] as? Int == 100)
    }

    @Test func csvHoldsEveryBucketAsTheMemberEndpointServesItPlusExpiredOnes() throws {
        let fake = try FakeVoucherify(arguments: ["--members", "12", "--export-delay-ms", "0"])
        let oddVoucher = #"v_odd,"quoted""#
        try fake.control("PUT", "members", [
            "campaign": FakeVoucherify.campaignID, "member": "ODD", "voucher_id": oddVoucher, "buckets": buckets(2, neverExpiring: 1),
            "expired_buckets": [["id": "lopb_gone", "points": 7, "expires_at": "2025-01-31"]],
        ])
        let (raw, csv) = try fake.exportCSV()

        #expect(raw.headers["content-type"]?.hasPrefix("text/csv") == true)
        #expect(raw.body.starts(with: [0xEF, 0xBB, 0xBF]))
        #expect(raw.body.last == 0x0A)
        #expect(csv.header == Self.labels)  // CSVDocument also refused any line end but CRLF
        #expect(raw.text.contains(#""v_odd,""quoted""""#))
        #expect(raw.text.contains(#""ACTIVE""#))  // Status is always quoted
        #expect(csv.rows.allSatisfy { $0.count == Self.labels.count })
        let rows = csv.labelled
        #expect(rows.allSatisfy { $0["Campaign ID"] == FakeVoucherify.campaignID })

        // Per member: the ACTIVE rows are exactly the buckets the member endpoint serves.
        let members = (1...12).map { "MEMBER-" + String(format: "%06d", $0) } + ["ODD"]
        var activeRows = 0
        for member in members {
            let served = try #require(try fake.apiCall(member: member).json["data"] as? [[String: Any]])
            let voucher = try #require(served.first?["voucher_id"] as? String)
            let fromEndpoint = Set(served.map { bucket in
                "\(bucket["id"] ?? "")|\((bucket["bucket"] as? [String: Any])?["total_points"] ?? "")|\(bucket["expires_at"] as? String ?? "")"
            })
            let active = rows.filter { $0["Voucher ID"] == voucher && $0["Status"] == "ACTIVE" }
            #expect(Set(active.map { "\($0["Id"] ?? "")|\($0["Points"] ?? "")|\($0["Expires At"] ?? "")" }) == fromEndpoint, "\(member)")
            let endpointPoints = served.reduce(0) { $0 + ((($1["bucket"] as? [String: Any])?["total_points"] as? Int) ?? 0) }
            #expect(active.reduce(0) { $0 + (Int($1["Points"] ?? "") ?? -1_000_000) } == endpointPoints, "\(member)")
            activeRows += active.count
        }
        #expect(rows.contains { $0["Voucher ID"] == oddVoucher && $0["Expires At"] == "" })  // never expires: empty

        // The rest are EXPIRED buckets from the past: the put one and generated history.
        let expired = rows.filter { $0["Status"] == "EXPIRED" }
        #expect(expired.count == rows.count - activeRows)
        #expect(expired.contains { $0["Id"] == "lopb_gone" && $0["Voucher ID"] == oddVoucher && $0["Points"] == "7" })
        #expect(expired.contains { $0["Voucher ID"]?.hasPrefix("v_fake_") == true })
        #expect(expired.allSatisfy { !($0["Expires At"] ?? "").isEmpty && ($0["Expires At"] ?? "") < todayUTC() })
    }

    @Test func expiredTokenIsRefusedAndAFreshPollGivesAWorkingURL() throws {
        let fake = try FakeVoucherify(arguments: ["--export-delay-ms", "0", "--export-token-ttl-ms", "1"])
        let id = try fake.newExport()
        let stale = try fake.downloadURL(id)
        var refused: HTTPResult?
        try waitUntil("the 1 ms token has expired") {
            refused = try fake.download(stale)
            return refused?.status != 200
        }
        #expect(refused?.status == 401)
        #expect(refused?.json["key"] as? String == "unauthorized")
        #expect((refused?.json["details"] as? String)?.contains("expired") == true)

        try fake.exportSettings(["token_ttl_ms": 300_000])
        let fresh = try fake.downloadURL(id)
        let another = try fake.downloadURL(id)
        #expect(try fake.download(fresh).status == 200)
        #expect(try fake.download(another).status == 200)  // older tokens stay valid until they expire
        #expect(try fake.download(fresh).status == 200)  // and serve more than once
        #expect(try fake.download(stale).status == 401)

        let withoutToken = try fake.download("\(fake.baseURL)/v1/exports/\(id)/download")
        #expect(withoutToken.status == 401)
        #expect((withoutToken.json["details"] as? String)?.contains("Missing") == true)
        // A token is good for its own export only.
        let otherExport = try fake.downloadURL(try fake.newExport())
        let token = try #require(otherExport.split(separator: "?").last)
        #expect(try fake.download("\(fake.baseURL)/v1/exports/\(id)/download?\(token)").status == 401)
    }

    @Test func everyExportCallNeedsTheCredentials() throws {
        let fake = try FakeVoucherify(arguments: ["--export-delay-ms", "0"])
        let id = try fake.newExport()
        let url = try fake.downloadURL(id)
        for headers in [[], ["X-App-Id: \(FakeVoucherify.appID)", "X-App-Token: wrong"]] {
            let create = try fake.createExport(headers: headers)
            #expect(create.status == 401)
            #expect(create.json["key"] as? String == "unauthorized")
            #expect(try fake.getExport(id, headers: headers).status == 401)
            #expect(try fake.download(url, headers: headers).status == 401)
        }
        #expect(try fake.download(url).status == 200)  // refusals did not spend the token
        let stats = try fake.exportStats()
        #expect(stats["created"] as? Int == 1)
        #expect(stats["downloads"] as? Int == 1)
        #expect(stats["rejected_downloads"] as? Int == 2)
    }

    @Test func unknownCampaignAndUnknownExportAreNotFound() throws {
        let fake = try FakeVoucherify(arguments: ["--export-delay-ms", "0"])
        let noCampaign = try fake.createExport(campaign: "camp_nope")
        #expect(noCampaign.status == 404)
        #expect(noCampaign.json["key"] as? String == "not_found")
        #expect(noCampaign.json["resource_type"] as? String == "campaign")
        #expect(noCampaign.json["resource_id"] as? String == "camp_nope")
        #expect(try fake.createExport(campaign: "Test%20Loyalty").status == 200)  // by name, as Voucherify allows

        for answer in [try fake.getExport("exp_nope"), try fake.download("\(fake.baseURL)/v1/exports/exp_nope/download?token=x")] {
            #expect(answer.status == 404)
            #expect(answer.json["resource_type"] as? String == "export")
            #expect(answer.json["resource_id"] as? String == "exp_nope")
        }
        let wrongMethod = try CurlClient.request("GET", "\(fake.baseURL)/v1/loyalties/\(FakeVoucherify.campaignID)/points-expiration/export",
                                                 headers: FakeVoucherify.authHeaders, http2: false)
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"] == "POST")
    }

    @Test func fieldsAndOrderAreHonouredAndFiltersIgnored() throws {
        let fake = try FakeVoucherify(arguments: ["--members", "15", "--export-delay-ms", "0"])
        let parameters: [String: Any] = [
            "fields": ["expires_at", "points", "voucher_id"], "order": "-expires_at",
            "filters": ["junction": "and", "voucher_id": ["conditions": ["$in": ["v_fake_000001"]]]],
        ]
        let created = try fake.createExport(parameters: parameters)
        #expect(created.status == 200)
        let echoed = try #require(created.json["parameters"] as? [String: Any])
        #expect(echoed["fields"] as? [String] == ["expires_at", "points", "voucher_id"])
        #expect(echoed["order"] as? String == "-expires_at")
        #expect((echoed["filters"] as? [String: Any])?["junction"] as? String == "and")

        let descending = try fake.exportCSV(parameters: parameters).csv
        #expect(descending.header == ["Expires At", "Points", "Voucher ID"])
        #expect(descending.rows.allSatisfy { $0.count == 3 })
        #expect(Set(descending.rows.map { $0[2] }).count > 1)  // filters ignored: every member is there
        // Never-expiring buckets count as the latest date: first descending, last ascending.
        let sortKeys = { (csv: CSVDocument) in csv.labelled.map { row in row["Expires At"].map { $0.isEmpty ? "9999-12-31" : $0 } ?? "?" } }
        #expect(sortKeys(descending) == sortKeys(descending).sorted(by: >))
        #expect(descending.rows.first?[0] == "")
        let ascending = try fake.exportCSV(parameters: ["order": "expires_at"]).csv
        #expect(ascending.header == Self.labels)
        #expect(sortKeys(ascending) == sortKeys(ascending).sorted())
        #expect(ascending.rows.count == descending.rows.count)

        let before = try fake.exportStats()["created"] as? Int
        for bad: [String: Any] in [["fields": ["id", "code"]], ["fields": ["id", "id"]], ["fields": "id"], ["order": "points"]] {
            let refused = try fake.createExport(parameters: bad)
            #expect(refused.status == 400, "\(bad)")
            #expect(refused.json["key"] as? String == "invalid_payload", "\(bad)")
        }
        #expect(try fake.createExport(rawBody: Data("{\"parameters\":".utf8)).status == 400)
        #expect(try fake.exportStats()["created"] as? Int == before)
    }

    @Test func exportIsASnapshotAndTheExpiryJobMovesBucketsToExpired() throws {
        let fake = try FakeVoucherify(arguments: ["--export-delay-ms", "0"])
        try fake.putMember("SNAP", buckets: buckets(2, points: 10, firstDay: -5), voucherID: "v_snap")
        let before = try fake.newExport()

        // The nightly job of today: both buckets' last days have passed.
        let expiry = try fake.expire(["campaign": FakeVoucherify.campaignID, "member": "SNAP", "deliver": false])
        #expect(expiry["expired_buckets"] as? Int == 2)
        #expect(try fake.apiCall(member: "SNAP").json["total"] as? Int == 0)
        let after = try fake.newExport()

        func snapRows(_ id: String) throws -> [[String: String]] {
            let answer = try fake.download(try fake.downloadURL(id))
            return try CSVDocument(answer.body).labelled.filter { $0["Voucher ID"] == "v_snap" }
        }
        let then = try snapRows(before)
        let now = try snapRows(after)
        #expect(then.map { $0["Status"] } == ["ACTIVE", "ACTIVE"])
        #expect(now.map { $0["Status"] } == ["EXPIRED", "EXPIRED"])
        #expect(now.map { $0["Id"] } == then.map { $0["Id"] })
        #expect(now.map { $0["Points"] } == ["10", "10"])
    }

    @Test func statsCountExportCallsWhichAlsoCountInTheRateLimitWindow() throws {
        let fake = try FakeVoucherify(arguments: ["--export-delay-ms", "0"])
        try fake.resetStats()
        let id = try fake.newExport()
        #expect(try fake.createExport(campaign: "Test%20Loyalty").status == 200)
        let url = try fake.downloadURL(id)
        #expect(try fake.download(url).status == 200)
        #expect(try fake.download(url + "x").status == 401)

        let stats = try fake.exportStats()
        #expect(stats["created"] as? Int == 2)
        #expect(stats["by_campaign"] as? [String: Int] == [FakeVoucherify.campaignID: 1, FakeVoucherify.campaignName: 1])
        #expect(stats["polls"] as? Int == 1)
        #expect(stats["downloads"] as? Int == 1)
        #expect(stats["rejected_downloads"] as? Int == 1)
        #expect(try fake.stats().calls == 0)  // member reads only
        #expect(try fake.control("GET", "rate-limit", nil)["used"] as? Int == 5)

        try fake.setRateLimit(limit: 1, windowSeconds: 3600, enforce: true)
        #expect(try fake.getExport(id).status == 200)
        let limited = try fake.getExport(id)
        #expect(limited.status == 429)
        #expect(limited.headers["retry-after"] != nil)
        #expect(try fake.download(url).status == 429)
        let after = try fake.exportStats()
        #expect(after["polls"] as? Int == 3)
        #expect(after["rejected_downloads"] as? Int == 1)  // a 429 is counted as rate_limited instead
        #expect(try fake.stats().rateLimited == 2)

        try fake.resetStats()
        let reset = try fake.exportStats()
        #expect(reset["created"] as? Int == 0)
        #expect((reset["by_campaign"] as? [String: Int])?.isEmpty == true)
    }

    @Test func largeExportIsStreamedWithEveryRowAndSurvivesAReaderGivingUp() throws {
        let fake = try FakeVoucherify(arguments: ["--members", "4000", "--buckets-per-member", "5", "--expired-buckets-per-member", "1",
                                                  "--export-delay-ms", "0"])
        let id = try fake.newExport()
        // A reader that gives up midway (slow, then gone) leaves the fake serving.
        try run("/usr/bin/curl", ["-sS", "--http1.1", "--limit-rate", "100k", "--max-time", "1", "-o", "/dev/null"]
                + FakeVoucherify.authHeaders.flatMap { ["-H", $0] } + [try fake.downloadURL(id)])
        #expect(fake.isRunning)

        let raw = try fake.download(try fake.downloadURL(id))
        #expect(raw.status == 200)
        #expect(raw.headers["transfer-encoding"] == "chunked")
        #expect(raw.body.count > 1_000_000)  // many pieces
        let csv = try CSVDocument(raw.body)
        #expect(csv.rows.count == 24_000)
        #expect(csv.rows.filter { $0[4] == "ACTIVE" }.count == 20_000)
        #expect(Set(csv.rows.map { $0[0] }).count == 24_000)  // bucket ids are unique
    }
}
