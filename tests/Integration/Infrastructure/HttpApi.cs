using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>A raw HTTP answer: status, headers, body text and (when the body is JSON) its parse.</summary>
public sealed record ApiResponse(int Status, HttpResponseHeaders Headers, HttpContentHeaders ContentHeaders, string Body)
{
    public JsonNode Json => JsonNode.Parse(Body) ?? throw new InvalidOperationException("body is JSON null");

    public string? Header(string name) =>
        Headers.TryGetValues(name, out var v) ? string.Join(",", v) : ContentHeaders.TryGetValues(name, out var c) ? string.Join(",", c) : null;

    public override string ToString() => $"{Status}: {HttpApi.Shorten(Body, 2000)}";
}

/// <summary>Plain HttpClient helpers for the OpenAI-compatible endpoints (no SDK in between).</summary>
public static class HttpApi
{
    public const string Chat = "/v1/chat/completions";
    public const string Completions = "/v1/completions";

    public static JsonObject ChatBody(string content = "Say something.", int maxTokens = 8, double? temperature = 0)
    {
        var body = new JsonObject
        {
            ["model"] = RepoPaths.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["max_tokens"] = maxTokens,
        };
        if (temperature is double t) body["temperature"] = t;
        return body;
    }

    public static JsonObject CompletionBody(JsonNode prompt, int maxTokens = 8, double? temperature = 0)
    {
        var body = new JsonObject { ["model"] = RepoPaths.ModelId, ["prompt"] = prompt, ["max_tokens"] = maxTokens };
        if (temperature is double t) body["temperature"] = t;
        return body;
    }

    public static async Task<ApiResponse> PostAsync(HttpClient http, string path, string body,
        IEnumerable<KeyValuePair<string, string>>? headers = null, string contentType = "application/json")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        foreach (var (k, v) in headers ?? []) request.Headers.TryAddWithoutValidation(k, v);
        using var response = await http.SendAsync(request);
        return new ApiResponse((int)response.StatusCode, response.Headers, response.Content.Headers, await response.Content.ReadAsStringAsync());
    }

    public static async Task<ApiResponse> PostBytesAsync(HttpClient http, string path, byte[] body, string contentType = "application/json")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        using var response = await http.SendAsync(request);
        return new ApiResponse((int)response.StatusCode, response.Headers, response.Content.Headers, await response.Content.ReadAsStringAsync());
    }

    public static Task<ApiResponse> PostAsync(HttpClient http, string path, JsonNode body, IEnumerable<KeyValuePair<string, string>>? headers = null) =>
        PostAsync(http, path, body.ToJsonString(), headers);

    public static async Task<ApiResponse> GetAsync(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        return new ApiResponse((int)response.StatusCode, response.Headers, response.Content.Headers, await response.Content.ReadAsStringAsync());
    }

    /// <summary>A 200 JSON answer, or a failed assertion that shows what came back.</summary>
    public static async Task<JsonNode> PostOkAsync(HttpClient http, string path, JsonNode body, IEnumerable<KeyValuePair<string, string>>? headers = null)
    {
        var response = await PostAsync(http, path, body, headers);
        Assert.True(response.Status == 200, $"POST {path} {Shorten(body.ToJsonString())} -> {response}");
        return response.Json;
    }

    /// <summary>
    /// Splits a server-sent-events body into its data payloads, checking the framing OpenAI uses:
    /// every event is exactly one "data: ..." line followed by a blank line.
    /// </summary>
    public static List<string> ParseSse(string body)
    {
        var payloads = new List<string>();
        string normalized = body.Replace("\r\n", "\n");
        Assert.EndsWith("\n\n", normalized);
        foreach (var block in normalized.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = block.Split('\n');
            Assert.True(lines.Length == 1, $"an event with more than one line: {block}");
            Assert.StartsWith("data: ", lines[0]);
            payloads.Add(lines[0]["data: ".Length..]);
        }
        return payloads;
    }

    /// <summary>
    /// Checks the OpenAI error shape {"error": {"message", "type", "param", "code"}} with no internals leaking.
    /// </summary>
    public static JsonObject AssertOpenAiError(ApiResponse response, int expectedStatus, string? expectedCode = null, string? expectedParam = null)
    {
        Assert.True(response.Status == expectedStatus, $"expected {expectedStatus}, got {response}");
        AssertNoInternals(response.Body);
        Assert.StartsWith("application/json", response.ContentHeaders.ContentType?.ToString() ?? "");
        var root = Assert.IsType<JsonObject>(response.Json);
        var error = Assert.IsType<JsonObject>(root["error"]);
        foreach (var key in new[] { "message", "type", "param", "code" })
            Assert.True(error.ContainsKey(key), $"error object lacks '{key}': {response.Body}");
        var message = error["message"]?.GetValue<string>();
        Assert.False(string.IsNullOrWhiteSpace(message), $"empty error message: {response.Body}");
        Assert.False(string.IsNullOrWhiteSpace(error["type"]?.GetValue<string>()), $"empty error type: {response.Body}");
        if (expectedCode is not null) Assert.Equal(expectedCode, error["code"]?.GetValue<string>());
        if (expectedParam is not null) Assert.Equal(expectedParam, error["param"]?.GetValue<string>());
        return error;
    }

    public static void AssertNoInternals(string body)
    {
        foreach (var leak in new[] { "   at ", "Exception", ".cs:line", "StackTrace", "System.", "MoeServe.Api." })
            Assert.False(body.Contains(leak, StringComparison.Ordinal), $"response leaks internals ('{leak}'): {body}");
    }

    /// <summary>The value of an unlabelled sample (or the sum over all label sets) in Prometheus text format.</summary>
    public static double? MetricValue(string exposition, string name)
    {
        double? sum = null;
        foreach (var line in exposition.Split('\n'))
        {
            if (line.StartsWith('#')) continue;
            if (!(line.StartsWith(name + " ") || line.StartsWith(name + "{"))) continue;
            string value = line[(line.LastIndexOf(' ') + 1)..];
            sum = (sum ?? 0) + double.Parse(value, CultureInfo.InvariantCulture);
        }
        return sum;
    }

    public static async Task<double?> MetricAsync(HttpClient http, string name)
    {
        var metrics = await GetAsync(http, "/metrics");
        Assert.Equal(200, metrics.Status);
        return MetricValue(metrics.Body, name);
    }

    public static string Shorten(string text, int max = 400) => text.Length <= max ? text : text[..max] + $"... ({text.Length} chars)";

    public static string Text(JsonNode? node) => node?.GetValue<string>() ?? throw new InvalidOperationException("missing string");

    public static int Int(JsonNode? node) => node?.GetValue<int>() ?? throw new InvalidOperationException("missing int");

    public static JsonSerializerOptions Pretty { get; } = new() { WriteIndented = true };
}
