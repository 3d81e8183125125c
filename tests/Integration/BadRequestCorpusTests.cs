using System.Text;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>
/// Malformed and out-of-range requests: each gets its 4xx in the OpenAI error shape, never a 500 and never
/// internals; the server keeps serving afterwards.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class BadRequestCorpusTests(ServerFixture fixture)
{
    public sealed record BadCase(string Path, string Body, int Status, string? Code = null, string? Param = null,
        IReadOnlyList<KeyValuePair<string, string>>? Headers = null, string ContentType = "application/json")
    {
        /// <summary>Bytes sent instead of <see cref="Body"/>'s UTF-8 (for bodies that are not valid UTF-8).</summary>
        public byte[]? RawBody { get; init; }
    }

    /// <summary>A body whose "{INVALID}" placeholder becomes the bytes FF FE, which are not UTF-8.</summary>
    private static BadCase InvalidUtf8(string path, string template, string? param = null) =>
        new(path, template, 400, Param: param)
        {
            RawBody = [.. Encoding.UTF8.GetBytes(template[..template.IndexOf("{INVALID}", StringComparison.Ordinal)]), 0xFF, 0xFE,
                       .. Encoding.UTF8.GetBytes(template[(template.IndexOf("{INVALID}", StringComparison.Ordinal) + "{INVALID}".Length)..])],
        };

    private const string M = RepoPaths.ModelId;
    private const string Msgs = """[{"role":"user","content":"hi"}]""";

    private static string ChatWith(string fields) => $$"""{"model":"{{M}}","messages":{{Msgs}},{{fields}}}""";
    private static string CompletionWith(string fields) => $$"""{"model":"{{M}}","prompt":"hi",{{fields}}}""";

    /// <summary>Random letters and digits: about one token per character for the byte-level test tokenizer.</summary>
    private static string LongText(int chars)
    {
        var random = new Random(42);
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        var sb = new StringBuilder(chars);
        for (int i = 0; i < chars; i++) sb.Append(alphabet[random.Next(alphabet.Length)]);
        return sb.ToString();
    }

    private static readonly Lazy<Dictionary<string, BadCase>> _cases = new(() =>
    {
        int context = RepoPaths.ModelContextLength;
        int vocab = RepoPaths.ModelVocabSize;
        string longPrompt = LongText(context * 4);
        string tooManyIds = "[" + string.Join(",", Enumerable.Repeat(65, context + 1)) + "]";
        string oversized = ChatWith($"\"user\":\"{new string('x', ServerFixture.MaxRequestBodyBytes + 1024)}\"");
        const string chat = HttpApi.Chat, completions = HttpApi.Completions;
        return new Dictionary<string, BadCase>
        {
            // Not JSON / not an object
            ["malformed json"] = new(chat, """{"model": "x", "messages": [""", 400),
            ["trailing garbage"] = new(chat, ChatWith("\"max_tokens\":1") + "}", 400),
            ["empty body"] = new(chat, "", 400),
            ["body is an array"] = new(chat, "[1,2,3]", 400),
            ["body is a string"] = new(chat, "\"hello\"", 400),
            ["body is null"] = new(chat, "null", 400),
            ["body is a number"] = new(completions, "42", 400),
            // messages
            ["empty messages"] = new(chat, $$"""{"model":"{{M}}","messages":[]}""", 400, Param: "messages"),
            ["missing messages"] = new(chat, $$"""{"model":"{{M}}"}""", 400, Param: "messages"),
            ["messages is a string"] = new(chat, $$"""{"model":"{{M}}","messages":"hi"}""", 400, Param: "messages"),
            ["message is null"] = new(chat, $$"""{"model":"{{M}}","messages":[null]}""", 400),
            ["unknown role"] = new(chat, $$"""{"model":"{{M}}","messages":[{"role":"wizard","content":"hi"}]}""", 400, Param: "messages[0].role"),
            ["missing role"] = new(chat, $$"""{"model":"{{M}}","messages":[{"content":"hi"}]}""", 400, Param: "messages[0].role"),
            ["content is a number"] = new(chat, $$"""{"model":"{{M}}","messages":[{"role":"user","content":42}]}""", 400, Param: "messages[0].content"),
            ["content is an object"] = new(chat, $$$"""{"model":"{{{M}}}","messages":[{"role":"user","content":{"text":"hi"}}]}""", 400, Param: "messages[0].content"),
            ["content missing"] = new(chat, $$"""{"model":"{{M}}","messages":[{"role":"user"}]}""", 400, Param: "messages[0].content"),
            ["image content part"] = new(chat, $$$"""{"model":"{{{M}}}","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}]}""", 400, Param: "messages[0].content"),
            ["role is a number"] = new(chat, $$"""{"model":"{{M}}","messages":[{"role":1,"content":"hi"}]}""", 400),
            // max_tokens
            ["negative max_tokens"] = new(chat, ChatWith("\"max_tokens\":-5"), 400, Param: "max_tokens"),
            ["max_tokens 0"] = new(chat, ChatWith("\"max_tokens\":0"), 400, Param: "max_tokens"),
            ["max_completion_tokens 0"] = new(chat, ChatWith("\"max_completion_tokens\":0"), 400, Param: "max_completion_tokens"),
            ["huge max_tokens"] = new(chat, ChatWith("\"max_tokens\":1000000"), 400, Code: "context_length_exceeded"),
            ["huge max_completion_tokens"] = new(chat, ChatWith("\"max_completion_tokens\":2147483647"), 400, Code: "context_length_exceeded"),
            ["max_tokens beyond int"] = new(chat, ChatWith("\"max_tokens\":100000000000000000000"), 400, Param: "max_tokens"),
            ["max_tokens a string"] = new(chat, ChatWith("\"max_tokens\":\"ten\""), 400, Param: "max_tokens"),
            ["max_tokens fractional"] = new(chat, ChatWith("\"max_tokens\":2.5"), 400, Param: "max_tokens"),
            ["completions huge max_tokens"] = new(completions, CompletionWith("\"max_tokens\":5000"), 400, Code: "context_length_exceeded"),
            ["completions negative max_tokens"] = new(completions, CompletionWith("\"max_tokens\":-1"), 400, Param: "max_tokens"),
            // sampling ranges and types
            ["temperature -1"] = new(chat, ChatWith("\"temperature\":-1"), 400, Param: "temperature"),
            ["temperature 3"] = new(chat, ChatWith("\"temperature\":3"), 400, Param: "temperature"),
            ["temperature a string"] = new(chat, ChatWith("\"temperature\":\"hot\""), 400, Param: "temperature"),
            ["top_p 0"] = new(chat, ChatWith("\"top_p\":0"), 400, Param: "top_p"),
            ["top_p 2"] = new(chat, ChatWith("\"top_p\":2"), 400, Param: "top_p"),
            ["top_k -2"] = new(chat, ChatWith("\"top_k\":-2"), 400, Param: "top_k"),
            ["n 0"] = new(chat, ChatWith("\"n\":0"), 400, Param: "n"),
            ["n 100"] = new(chat, ChatWith("\"n\":100"), 400, Param: "n"),
            ["completions n 0"] = new(completions, CompletionWith("\"n\":0"), 400, Param: "n"),
            ["presence_penalty 3"] = new(chat, ChatWith("\"presence_penalty\":3"), 400, Param: "presence_penalty"),
            ["frequency_penalty -3"] = new(chat, ChatWith("\"frequency_penalty\":-3"), 400, Param: "frequency_penalty"),
            ["seed a string"] = new(chat, ChatWith("\"seed\":\"abc\""), 400, Param: "seed"),
            ["stream yes"] = new(chat, ChatWith("\"stream\":\"yes\""), 400, Param: "stream"),
            ["stream_options without stream"] = new(chat, ChatWith("\"stream_options\":{\"include_usage\":true}"), 400, Param: "stream_options"),
            ["stop list of 5"] = new(chat, ChatWith("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), 400, Param: "stop"),
            ["stop a number"] = new(chat, ChatWith("\"stop\":7"), 400, Param: "stop"),
            ["stop with empty string"] = new(completions, CompletionWith("\"stop\":[\"\"]"), 400, Param: "stop"),
            ["top_logprobs without logprobs"] = new(chat, ChatWith("\"top_logprobs\":3"), 400),
            ["top_logprobs 21"] = new(chat, ChatWith("\"logprobs\":true,\"top_logprobs\":21"), 400, Param: "top_logprobs"),
            ["completions logprobs 21"] = new(completions, CompletionWith("\"logprobs\":21"), 400, Param: "logprobs"),
            ["completions logprobs true"] = new(completions, CompletionWith("\"logprobs\":true"), 400, Param: "logprobs"),
            // context length
            ["chat prompt longer than context"] = new(chat, $$"""{"model":"{{M}}","messages":[{"role":"user","content":"{{longPrompt}}"}],"max_tokens":1}""", 400, Code: "context_length_exceeded"),
            ["chat prompt longer than context, no max_tokens"] = new(chat, $$"""{"model":"{{M}}","messages":[{"role":"user","content":"{{longPrompt}}"}]}""", 400, Code: "context_length_exceeded"),
            ["completions prompt longer than context"] = new(completions, $$"""{"model":"{{M}}","prompt":"{{longPrompt}}","max_tokens":1}""", 400, Code: "context_length_exceeded"),
            ["completions token ids longer than context"] = new(completions, $$"""{"model":"{{M}}","prompt":{{tooManyIds}},"max_tokens":1}""", 400, Code: "context_length_exceeded"),
            // model
            ["unknown model"] = new(chat, $$"""{"model":"gpt-5","messages":{{Msgs}}}""", 404, Code: "model_not_found", Param: "model"),
            ["completions unknown model"] = new(completions, """{"model":"gpt-5","prompt":"hi"}""", 404, Code: "model_not_found", Param: "model"),
            ["missing model"] = new(chat, $$"""{"messages":{{Msgs}}}""", 400, Param: "model"),
            ["empty model"] = new(chat, $$"""{"model":"","messages":{{Msgs}}}""", 400, Param: "model"),
            ["model a number"] = new(chat, $$"""{"model":5,"messages":{{Msgs}}}""", 400, Param: "model"),
            // completions prompt forms
            ["token id out of vocab"] = new(completions, $$"""{"model":"{{M}}","prompt":[1,2,{{vocab}}]}""", 400, Param: "prompt"),
            ["negative token id"] = new(completions, $$"""{"model":"{{M}}","prompt":[1,-1]}""", 400, Param: "prompt"),
            ["token id out of vocab in nested list"] = new(completions, $$"""{"model":"{{M}}","prompt":[[1,2],[99999]]}""", 400, Param: "prompt[1]"),
            ["fractional token id"] = new(completions, $$"""{"model":"{{M}}","prompt":[1,2.5]}""", 400, Param: "prompt"),
            ["missing prompt"] = new(completions, $$"""{"model":"{{M}}"}""", 400, Param: "prompt"),
            ["empty prompt string"] = new(completions, $$"""{"model":"{{M}}","prompt":""}""", 400, Param: "prompt"),
            ["empty prompt list"] = new(completions, $$"""{"model":"{{M}}","prompt":[]}""", 400, Param: "prompt"),
            ["empty token-id list"] = new(completions, $$"""{"model":"{{M}}","prompt":[[]]}""", 400),
            ["mixed prompt list"] = new(completions, $$"""{"model":"{{M}}","prompt":["a",1]}""", 400, Param: "prompt"),
            ["prompt an object"] = new(completions, $$$"""{"model":"{{{M}}}","prompt":{"text":"a"}}""", 400, Param: "prompt"),
            ["too many prompts"] = new(completions, $$"""{"model":"{{M}}","prompt":[{{string.Join(",", Enumerable.Repeat("\"a\"", 65))}}],"max_tokens":1}""", 400, Param: "prompt"),
            // routing
            ["routing header bogus"] = new(chat, ChatWith("\"max_tokens\":1"), 400, Headers: [new("X-Routing-Policy", "bogus")]),
            ["routing body bogus"] = new(completions, CompletionWith("\"moe_routing\":{\"policy\":\"bogus\"}"), 400, Param: "moe_routing.policy"),
            ["capacity factor negative"] = new(chat, ChatWith("\"moe_routing\":{\"capacity_factor\":-1}"), 400, Param: "moe_routing.capacity_factor"),
            ["moe_routing a string"] = new(chat, ChatWith("\"moe_routing\":\"vanilla\""), 400, Param: "moe_routing"),
            // bytes that are not UTF-8 inside JSON strings
            ["invalid utf-8 in message content"] = InvalidUtf8(chat, $$"""{"model":"{{M}}","messages":[{"role":"user","content":"a{INVALID}b"}],"max_tokens":1}"""),
            ["invalid utf-8 in prompt"] = InvalidUtf8(completions, $$"""{"model":"{{M}}","prompt":"a{INVALID}b","max_tokens":1}"""),
            ["invalid utf-8 in stop"] = InvalidUtf8(completions, $$"""{"model":"{{M}}","prompt":"ab","stop":"{INVALID}","max_tokens":1}"""),
            ["invalid utf-8 in model"] = InvalidUtf8(chat, $$"""{"model":"{INVALID}","messages":{{Msgs}},"max_tokens":1}"""),
            ["deeply nested json"] = new(chat, string.Concat(Enumerable.Repeat("{\"a\":", 100)) + "1" + new string('}', 100), 400),
            // size
            ["body over the size limit"] = new(chat, oversized, 413, Code: "request_too_large"),
        };
    });

    public static IEnumerable<object[]> CaseNames => _cases.Value.Keys.Select(k => new object[] { k });

    private static async Task<ApiResponse> SendAsync(HttpClient http, BadCase c) =>
        c.RawBody is { } raw
            ? await HttpApi.PostBytesAsync(http, c.Path, raw, c.ContentType)
            : await HttpApi.PostAsync(http, c.Path, c.Body, c.Headers, c.ContentType);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task Bad_request_gets_an_openai_error(string name)
    {
        var c = _cases.Value[name];
        var response = await SendAsync(fixture.Http, c);
        Assert.True(response.Status != 500, $"{name}: 500 for bad input: {response}");
        var error = HttpApi.AssertOpenAiError(response, c.Status, c.Code, c.Param);
        Assert.True(HttpApi.Text(error["message"]).Length < 1000, $"{name}: overly long message");
        if (c.Status == 400) Assert.Equal("invalid_request_error", HttpApi.Text(error["type"]));
    }

    [Fact]
    public async Task Server_keeps_serving_after_the_whole_corpus()
    {
        // Every bad request once more, back to back; whatever each one gets (the theory above judges that), the
        // server must answer all of them and then serve a normal request.
        foreach (var (name, c) in _cases.Value)
        {
            var response = await SendAsync(fixture.Http, c);
            Assert.True(response.Status >= 400, $"{name}: {response}");
        }
        Assert.False(fixture.Server.HasExited, fixture.Server.Logs);
        Assert.Equal(200, (await HttpApi.GetAsync(fixture.Http, "/health")).Status);
        var ok = await HttpApi.PostOkAsync(fixture.Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 3));
        Assert.Equal(3, HttpApi.Int(ok["usage"]!["completion_tokens"]));
        var okCompletion = await HttpApi.PostOkAsync(fixture.Http, HttpApi.Completions, HttpApi.CompletionBody("still alive", maxTokens: 2));
        Assert.Equal(2, HttpApi.Int(okCompletion["usage"]!["completion_tokens"]));
    }

    [Fact]
    public async Task Wrong_method_on_a_known_route_is_an_openai_error()
    {
        // GET on a POST-only route: a 404 or 405, in the OpenAI shape either way.
        var response = await HttpApi.GetAsync(fixture.Http, HttpApi.Chat);
        Assert.True(response.Status is 404 or 405, response.ToString());
        HttpApi.AssertOpenAiError(response, response.Status);
    }
}
