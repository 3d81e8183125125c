using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace MoeServe.Cli.Load;

/// <summary>
/// Sends one streaming /v1/completions request with token-id prompt and reads its server-sent events,
/// timing every token. logprobs = 0 makes the server send one chunk per generated token, so chunk gaps
/// are inter-token latencies even where a token completes no visible text.
/// </summary>
public static class StreamingRequest
{
    public static async Task<RequestTiming> SendAsync(HttpClient http, string model, int[] prompt, int maxTokens, CancellationToken ct)
    {
        var body = new
        {
            model,
            prompt,
            max_tokens = maxTokens,
            temperature = 0,
            logprobs = 0,
            ignore_eos = true,
            stream = true,
            stream_options = new { include_usage = true },
        };
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = JsonContent.Create(body) };
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (HttpRequestException e)
        {
            return new RequestTiming(0, null, clock.Elapsed.TotalSeconds, [], 0, $"connection: {e.Message}");
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                string text = await response.Content.ReadAsStringAsync(ct);
                return new RequestTiming((int)response.StatusCode, null, clock.Elapsed.TotalSeconds, [], 0,
                    $"status {(int)response.StatusCode}: {Excerpt(text)}");
            }
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
            double? first = null;
            double last = 0;
            var gaps = new List<double>();
            int outputTokens = 0;
            while (await reader.ReadLineAsync(ct) is { } line)
            {
                if (!line.StartsWith("data: ")) continue;
                string data = line[6..];
                if (data == "[DONE]") break;
                // The client shares the machine with the server: only the final usage chunk is parsed as
                // JSON; token chunks are recognised by their logprobs object.
                if (data.StartsWith("{\"error\"")) return new RequestTiming(500, first, clock.Elapsed.TotalSeconds, gaps, outputTokens, $"error event: {Excerpt(data)}");
                if (data.Contains("\"usage\":{"))
                {
                    using var doc = JsonDocument.Parse(data);
                    outputTokens = doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
                }
                if (!data.Contains("\"logprobs\":{")) continue;
                double now = clock.Elapsed.TotalSeconds;
                if (first is null) first = now;
                else gaps.Add(now - last);
                last = now;
            }
            return new RequestTiming(200, first, clock.Elapsed.TotalSeconds, gaps, outputTokens);
        }
    }

    /// <summary>The start of a server's answer, short enough for a line of the report.</summary>
    private static string Excerpt(string text) => text[..Math.Min(text.Length, 200)];
}
