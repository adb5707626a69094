import Testing
import RedisClient

/// Redis' error replies reach callers as a summary of their code, never verbatim: a reply can
/// carry a script's name or text, keys and arguments.
@Suite struct RedisErrorSummaryTests {
    @Test(arguments: [
        // Redis 7, a script's write refused for memory.
        ("OOM command not allowed when used memory > 'maxmemory'. script: 9405b057219b095af53ade2defba42938c4e5b28, on @user_script:1.",
         "out of memory"),
        // Older Redis wraps the same refusal in a script error quoting the script's source.
        ("ERR Error running script (call to f_9405b057): @user_script:2: @user_script: 2: -OOM command not allowed when used memory > 'maxmemory'",
         "out of memory"),
        ("ERR Error compiling script (new function): user_script:1: ')' expected near '<eof>'", "script error"),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", "busy running a script"),
        ("LOADING Redis is loading the dataset in memory", "loading its data set"),
        ("READONLY You can't write against a read only replica.", "a read-only replica"),
        ("NOAUTH Authentication required.", "authentication required"),
        ("WRONGPASS invalid username-password pair or user is disabled.", "password refused"),
        ("ERR unknown command 'FOO', with args beginning with: 'secret' ", "error"),
        ("SOMENEWCODE something happened to key pe:{CARD-1}:answers", "error SOMENEWCODE"),
        ("unexpected reply", "unexpected reply"),
        ("", "unexpected reply"),
    ])
    func summarisesByCode(_ reply: String, _ summary: String) {
        #expect(RedisErrorSummary.summary(of: reply) == summary)
        #expect(RedisError.server(reply).description == "Redis: \(summary)")
    }

    @Test func theRawReplyIsForLogsOnlyAndTruncated() {
        let long = "OOM " + String(repeating: "x", count: 1000)
        #expect(RedisError.server(long).rawReplyForLog?.count == RedisErrorSummary.maxLoggedCharacters + 1)
        #expect(RedisError.server("OOM short").rawReplyForLog == "OOM short")
        #expect(RedisError.timedOut(milliseconds: 500).rawReplyForLog == nil)
        #expect(!RedisError.server(long).description.contains("xxx"))
    }
}
