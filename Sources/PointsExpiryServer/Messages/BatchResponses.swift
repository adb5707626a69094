import Codecs
import ExpiryDomain
import RPC

/// `BatchGetMemberExpirationsResponse` as ProtoJSON: one `MemberResult` per requested position,
/// each member's expiration spliced in from its cached encoding (no re-encoding per result).
func batchResponseBody(_ batch: DistinctMembers, results: [Result<MemberAnswer, RPCError>], expiringBefore: CalendarDate?) -> [UInt8] {
    let encoded: [[UInt8]] = results.map { result in
        var writer = JSONWriter(capacity: 64)
        switch result {
        case .success(let found):
            writer.appendRaw(",\"expiration\":")
            writer.appendRaw(found.answer.responseBody(expiringBefore: expiringBefore))
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

/// `WarmMembersResponse` as ProtoJSON. Every requested position is counted once, so
/// requested = warmed + alreadyFresh + failed + deferred even when a member is listed twice.
func warmResponseBody(_ batch: DistinctMembers, outcomes: [WarmOutcome]) -> [UInt8] {
    var warmed = 0
    var alreadyFresh = 0
    var failed = JSONWriter(capacity: 64)
    var deferred = JSONWriter(capacity: 64)
    for index in batch.positions {
        let member = batch.members[index]
        switch outcomes[index] {
        case .warmed: warmed += 1
        case .alreadyFresh: alreadyFresh += 1
        case .failed(let error):
            if !failed.bytes.isEmpty { failed.appendRaw(byte: UInt8(ascii: ",")) }
            failed.appendRaw("{\"member\":")
            failed.appendString(member)
            failed.appendRaw(",\"code\":")
            failed.appendString(error.code.rawValue)
            failed.appendRaw(",\"message\":")
            failed.appendString(error.message)
            failed.appendRaw(byte: UInt8(ascii: "}"))
        case .deferred:
            if !deferred.bytes.isEmpty { deferred.appendRaw(byte: UInt8(ascii: ",")) }
            deferred.appendString(member)
        }
    }
    var writer = JSONWriter(capacity: 96 + failed.bytes.count + deferred.bytes.count)
    writer.appendRaw("{\"requested\":")
    writer.appendNumber(Int64(batch.positions.count))
    writer.appendRaw(",\"warmed\":")
    writer.appendNumber(Int64(warmed))
    writer.appendRaw(",\"alreadyFresh\":")
    writer.appendNumber(Int64(alreadyFresh))
    writer.appendRaw(",\"failed\":[")
    writer.appendRaw(failed.bytes)
    writer.appendRaw("],\"deferred\":[")
    writer.appendRaw(deferred.bytes)
    writer.appendRaw("]}")
    return writer.bytes
}
