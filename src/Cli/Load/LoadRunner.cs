using System.Diagnostics;

namespace MoeServe.Cli.Load;

/// <summary>
/// Drives one concurrency level: C clients each send streaming requests back to back until the level's
/// time is up; requests in flight at the deadline are finished and counted.
/// </summary>
public static class LoadRunner
{
    public static async Task<LevelResult> RunLevelAsync(HttpClient http, string model, IReadOnlyList<int[]> prompts,
        int concurrency, int maxTokens, TimeSpan duration, CancellationToken ct)
    {
        var results = new List<RequestTiming>();
        var clock = Stopwatch.StartNew();
        int next = 0;
        async Task Client()
        {
            while (clock.Elapsed < duration && !ct.IsCancellationRequested)
            {
                var prompt = prompts[Interlocked.Increment(ref next) % prompts.Count];
                var timing = await StreamingRequest.SendAsync(http, model, prompt, maxTokens, ct);
                lock (results) results.Add(timing);
                // A refused request is retried after a short pause, as a well-behaved client would.
                if (timing.Status == 429) await Task.Delay(100, ct);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Client()));
        return new LevelResult(concurrency, clock.Elapsed.TotalSeconds, results);
    }
}
