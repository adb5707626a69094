import APIMessages
import Codecs
import ExpiryDomain
import RPC

// `BatchGetMemberExpirationsResponse`: one `MemberResult` per requested position, in request order.

/// The binary form goes through the generated message; `binaryBody` gives each member's binary
/// answer (`BinaryAnswers`).
func batchResponseMessage(_ batch: DistinctMembers, results: [Result<MemberAnswer, RPCError>],
                          binaryBody: (CachedAnswer, _ member: String) throws(RPCError) -> [UInt8])
    -> Pointsexpiry_V1_BatchGetMemberExpirationsResponse {
    let encoded: [Pointsexpiry_V1_MemberResult] = results.enumerated().map { index, result in
        var out = Pointsexpiry_V1_MemberResult()
        out.member = batch.members[index]
        switch result {
        case .success(let found):
            do throws(RPCError) {
                let body = try binaryBody(found.answer, batch.members[index])
                do {
                    out.expiration = try Pointsexpiry_V1_MemberExpiration(serializedBytes: body)
                } catch {
                    throw RPCError(.internal, "a binary answer could not be read back: \(error)")
                }
                out.cache = found.source.rawValue
                out.age = found.ageSeconds
            } catch {
                out.error = error.protoMessage
            }
        case .failure(let error):
            out.error = error.protoMessage
        }
        return out
    }
    var response = Pointsexpiry_V1_BatchGetMemberExpirationsResponse()
    response.results = batch.positions.map { encoded[$0] }
    return response
}

/// ProtoJSON, each member's expiration spliced in from its cached encoding (no re-encoding per
/// result: bench-batch.sh).
func batchResponseJSON(_ batch: DistinctMembers, results: [Result<MemberAnswer, RPCError>], expiringBefore: CalendarDate?) -> [UInt8] {
    let encoded: [[UInt8]] = results.map { result in
        var writer = JSONWriter(capacity: ((try? result.get())?.answer.bodyPrefix.count ?? 0) + 128)
        switch result {
        case .success(let found):
            writer.appendRaw(",\"expiration\":")
            found.answer.appendResponseBody(to: &writer, expiringBefore: expiringBefore)
            writer.appendRaw(",\"cache\":")
            writer.appendString(found.source.rawValue)
            writer.appendRaw(",\"age\":")
            writer.appendInt64String(found.ageSeconds)
        case .failure(let error):
            writer.appendRaw(",\"error\":")
            writer.appendRaw(error.jsonBody())
            writer.appendRaw(",\"cache\":\"\",\"age\":\"0\"")
        }
        writer.appendRaw(byte: UInt8(ascii: "}"))
        return writer.bytes
    }
    var writer = JSONWriter(capacity: batch.positions.reduce(16) { $0 + encoded[$1].count + batch.members[$1].utf8.count + 16 })
    writer.appendRaw("{\"results\":[")
    for (position, index) in batch.positions.enumerated() {
        if position > 0 { writer.appendRaw(byte: UInt8(ascii: ",")) }
        writer.appendRaw("{\"member\":")
        writer.appendString(batch.members[index])
        writer.appendRaw(encoded[index])
    }
    writer.appendRaw("]}")
    return writer.bytes
}

/// What a warm did, counted once per requested position, so
/// requested = warmed + alreadyFresh + failed + deferred even when a member is listed twice.
struct WarmSummary: Equatable {
    var requested = 0
    var warmed = 0
    var alreadyFresh = 0
    var failed: [(member: String, error: RPCError)] = []
    var deferred: [String] = []

    init(_ batch: DistinctMembers, outcomes: [WarmOutcome]) {
        requested = batch.positions.count
        for index in batch.positions {
            let member = batch.members[index]
            switch outcomes[index] {
            case .warmed: warmed += 1
            case .alreadyFresh: alreadyFresh += 1
            case .failed(let error): failed.append((member, error))
            case .deferred: deferred.append(member)
            }
        }
    }

    static func == (lhs: WarmSummary, rhs: WarmSummary) -> Bool {
        lhs.requested == rhs.requested && lhs.warmed == rhs.warmed && lhs.alreadyFresh == rhs.alreadyFresh && lhs.deferred == rhs.deferred
            && lhs.failed.elementsEqual(rhs.failed) { $0.member == $1.member && $0.error == $1.error }
    }

    func responseBody(_ codec: MessageCodec) -> [UInt8] {
        switch codec {
        case .json: return json
        case .proto: return message.protoBytes
        }
    }

    var message: Pointsexpiry_V1_WarmMembersResponse {
        var message = Pointsexpiry_V1_WarmMembersResponse()
        message.requested = Int32(clamping: requested)
        message.warmed = Int32(clamping: warmed)
        message.alreadyFresh = Int32(clamping: alreadyFresh)
        message.failed = failed.map { failure in
            var out = Pointsexpiry_V1_WarmFailure()
            out.member = failure.member
            out.code = failure.error.code.rawValue
            out.message = failure.error.message
            return out
        }
        message.deferred = deferred
        return message
    }

    /// ProtoJSON with every scalar and list written, even when zero or empty.
    var json: [UInt8] {
        var writer = JSONWriter(capacity: 96 + failed.count * 96 + deferred.count * 24)
        writer.appendRaw("{\"requested\":")
        writer.appendNumber(Int64(requested))
        writer.appendRaw(",\"warmed\":")
        writer.appendNumber(Int64(warmed))
        writer.appendRaw(",\"alreadyFresh\":")
        writer.appendNumber(Int64(alreadyFresh))
        writer.appendRaw(",\"failed\":[")
        for (index, failure) in failed.enumerated() {
            if index > 0 { writer.appendRaw(byte: UInt8(ascii: ",")) }
            writer.appendRaw("{\"member\":")
            writer.appendString(failure.member)
            writer.appendRaw(",\"code\":")
            writer.appendString(failure.error.code.rawValue)
            writer.appendRaw(",\"message\":")
            writer.appendString(failure.error.message)
            writer.appendRaw(byte: UInt8(ascii: "}"))
        }
        writer.appendRaw("],\"deferred\":[")
        for (index, member) in deferred.enumerated() {
            if index > 0 { writer.appendRaw(byte: UInt8(ascii: ",")) }
            writer.appendString(member)
        }
        writer.appendRaw("]}")
        return writer.bytes
    }
}
