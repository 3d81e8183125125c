using System.Text;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>Raw HTTP: the wire format of /v1/chat/completions (JSON and server-sent events), health, models, 404.</summary>
[Collection(ServerCollection.Name)]
public sealed class ChatContractTests(ServerFixture fixture)
{
    private HttpClient Http => fixture.Http;

    [Fact]
    public async Task Chat_completion_object_has_the_openai_shape()
    {
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 6));
        Assert.True(response.Status == 200, response.ToString());
        Assert.StartsWith("application/json", response.ContentHeaders.ContentType?.ToString());
        var body = response.Json;
        Assert.Equal("chat.completion", HttpApi.Text(body["object"]));
        Assert.StartsWith("chatcmpl-", HttpApi.Text(body["id"]));
        Assert.Equal(RepoPaths.ModelId, HttpApi.Text(body["model"]));
        Assert.InRange(body["created"]!.GetValue<long>(), DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds());
        var choice = Assert.Single(body["choices"]!.AsArray())!;
        Assert.Equal(0, HttpApi.Int(choice["index"]));
        Assert.Equal("assistant", HttpApi.Text(choice["message"]!["role"]));
        Assert.False(string.IsNullOrEmpty(HttpApi.Text(choice["message"]!["content"])));
        Assert.Equal("length", HttpApi.Text(choice["finish_reason"]));
        var usage = body["usage"]!;
        Assert.Equal(6, HttpApi.Int(usage["completion_tokens"]));
        Assert.Equal(HttpApi.Int(usage["prompt_tokens"]) + 6, HttpApi.Int(usage["total_tokens"]));
        Assert.Equal("vanilla", HttpApi.Text(body["moe_routing"]!["policy"]));
    }

    [Fact]
    public async Task Streaming_chat_follows_the_openai_sse_format()
    {
        var request = HttpApi.ChatBody(maxTokens: 7);
        request["stream"] = true;
        request["stream_options"] = new JsonObject { ["include_usage"] = true };
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, request);
        Assert.True(response.Status == 200, response.ToString());
        Assert.StartsWith("text/event-stream", response.ContentHeaders.ContentType?.ToString());

        var payloads = HttpApi.ParseSse(response.Body);
        Assert.Equal("[DONE]", payloads[^1]);
        var chunks = payloads[..^1].Select(p => JsonNode.Parse(p)!).ToList();
        Assert.DoesNotContain(payloads[..^1], p => p == "[DONE]");
        Assert.True(chunks.Count >= 4, $"too few chunks:\n{response.Body}");

        string id = HttpApi.Text(chunks[0]["id"]);
        Assert.StartsWith("chatcmpl-", id);
        foreach (var chunk in chunks)
        {
            Assert.Equal("chat.completion.chunk", HttpApi.Text(chunk["object"]));
            Assert.Equal(id, HttpApi.Text(chunk["id"]));
            Assert.Equal(RepoPaths.ModelId, HttpApi.Text(chunk["model"]));
        }

        // First delta carries the role.
        var first = Assert.Single(chunks[0]["choices"]!.AsArray())!;
        Assert.Equal("assistant", HttpApi.Text(first["delta"]!["role"]));
        Assert.Null(first["finish_reason"]);

        // The usage chunk: no choices, usage present, last before [DONE].
        var usageChunk = chunks[^1];
        Assert.Empty(usageChunk["choices"]!.AsArray());
        var usage = usageChunk["usage"]!;
        Assert.Equal(7, HttpApi.Int(usage["completion_tokens"]));
        Assert.True(HttpApi.Int(usage["prompt_tokens"]) > 0);
        Assert.Equal(HttpApi.Int(usage["prompt_tokens"]) + 7, HttpApi.Int(usage["total_tokens"]));

        // The final choice chunk: empty delta and the finish reason.
        var final = Assert.Single(chunks[^2]["choices"]!.AsArray())!;
        Assert.Equal("length", HttpApi.Text(final["finish_reason"]));
        AssertEmptyDelta(final["delta"]!.AsObject());

        // Every chunk between the first and the final one is a content delta without a finish reason, without usage.
        var text = new StringBuilder();
        foreach (var chunk in chunks[1..^2])
        {
            var c = Assert.Single(chunk["choices"]!.AsArray())!;
            Assert.Null(c["finish_reason"]);
            Assert.Null(c["delta"]!["role"]);
            Assert.Null(chunk["usage"]);
            text.Append(HttpApi.Text(c["delta"]!["content"]));
        }
        Assert.Null(chunks[0]["usage"]);

        // The same greedy request without streaming produces the same text.
        var whole = await HttpApi.PostOkAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 7));
        Assert.Equal(HttpApi.Text(whole["choices"]![0]!["message"]!["content"]), text.ToString());
        Assert.Equal(HttpApi.Int(whole["usage"]!["prompt_tokens"]), HttpApi.Int(usage["prompt_tokens"]));
    }

    /// <summary>An empty delta: no role and no content (absent, null, or an empty string).</summary>
    private static void AssertEmptyDelta(JsonObject delta)
    {
        foreach (var (key, value) in delta)
            Assert.True(value is null || (value is JsonValue v && v.TryGetValue<string>(out var s) && s.Length == 0),
                $"final delta is not empty: {delta.ToJsonString()} ('{key}')");
    }

    [Fact]
    public async Task Streaming_without_include_usage_sends_no_usage_chunk()
    {
        var request = HttpApi.ChatBody(maxTokens: 3);
        request["stream"] = true;
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, request);
        Assert.Equal(200, response.Status);
        var payloads = HttpApi.ParseSse(response.Body);
        Assert.Equal("[DONE]", payloads[^1]);
        foreach (var p in payloads[..^1])
        {
            var chunk = JsonNode.Parse(p)!;
            Assert.Single(chunk["choices"]!.AsArray());
            Assert.Null(chunk["usage"]);
        }
    }

    [Fact]
    public async Task Streaming_with_n_2_gives_each_choice_a_role_delta_and_a_finish_chunk()
    {
        var request = HttpApi.ChatBody(maxTokens: 4, temperature: 1);
        request["n"] = 2;
        request["seed"] = 7;
        request["stream"] = true;
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, request);
        Assert.Equal(200, response.Status);
        var payloads = HttpApi.ParseSse(response.Body);
        Assert.Equal("[DONE]", payloads[^1]);
        var choices = payloads[..^1].SelectMany(p => JsonNode.Parse(p)!["choices"]!.AsArray()).ToList();
        foreach (int index in new[] { 0, 1 })
        {
            var mine = choices.Where(c => HttpApi.Int(c!["index"]) == index).ToList();
            Assert.Equal("assistant", HttpApi.Text(mine[0]!["delta"]!["role"]));
            Assert.Equal("length", HttpApi.Text(mine[^1]!["finish_reason"]));
            Assert.Single(mine, c => c!["finish_reason"] is not null);
        }
    }

    [Fact]
    public async Task Chat_n_2_returns_two_choices_and_usage_counts_both()
    {
        var request = HttpApi.ChatBody(maxTokens: 5, temperature: 1);
        request["n"] = 2;
        // Sampling may draw the end token early; without it both choices run to max_tokens, so usage is exact.
        request["ignore_eos"] = true;
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Chat, request);
        var choices = body["choices"]!.AsArray();
        Assert.Equal(2, choices.Count);
        Assert.Equal([0, 1], choices.Select(c => HttpApi.Int(c!["index"])).ToArray());
        Assert.Equal(10, HttpApi.Int(body["usage"]!["completion_tokens"]));
    }

    [Fact]
    public async Task Chat_logprobs_have_the_openai_shape()
    {
        var request = HttpApi.ChatBody(maxTokens: 4);
        request["logprobs"] = true;
        request["top_logprobs"] = 3;
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Chat, request);
        var content = body["choices"]![0]!["logprobs"]!["content"]!.AsArray();
        Assert.Equal(4, content.Count);
        foreach (var token in content)
        {
            Assert.NotNull(token!["token"]);
            float lp = token["logprob"]!.GetValue<float>();
            Assert.True(lp <= 0);
            Assert.NotNull(token["bytes"]);
            var top = token["top_logprobs"]!.AsArray();
            Assert.Equal(3, top.Count);
            // Greedy decoding picks the most likely token.
            Assert.True(lp >= top.Max(t => t!["logprob"]!.GetValue<float>()) - 1e-4f, token.ToJsonString());
        }
    }

    [Fact]
    public async Task Max_completion_tokens_and_text_content_parts_are_accepted()
    {
        var request = new JsonObject
        {
            ["model"] = RepoPaths.ModelId,
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "developer", ["content"] = "Be brief." },
                new JsonObject { ["role"] = "user", ["content"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "Hello" }) }),
            ["max_completion_tokens"] = 3,
            ["temperature"] = 0,
            ["user"] = "someone",
        };
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Chat, request);
        Assert.Equal(3, HttpApi.Int(body["usage"]!["completion_tokens"]));
    }

    [Fact]
    public async Task Health_is_200_when_ready()
    {
        var health = await HttpApi.GetAsync(Http, "/health");
        Assert.Equal(200, health.Status);
        Assert.Equal("ok", HttpApi.Text(health.Json["status"]));
    }

    [Fact]
    public async Task Models_lists_the_served_model()
    {
        var models = await HttpApi.GetAsync(Http, "/v1/models");
        Assert.Equal(200, models.Status);
        Assert.Equal("list", HttpApi.Text(models.Json["object"]));
        var model = Assert.Single(models.Json["data"]!.AsArray())!;
        Assert.Equal(RepoPaths.ModelId, HttpApi.Text(model["id"]));
        Assert.Equal("model", HttpApi.Text(model["object"]));
    }

    [Theory]
    [InlineData("/nope")]
    [InlineData("/v1/nope")]
    [InlineData("/v1/chat/completions/extra")]
    public async Task Unknown_route_is_404_in_openai_shape(string path)
    {
        HttpApi.AssertOpenAiError(await HttpApi.GetAsync(Http, path), 404);
        HttpApi.AssertOpenAiError(await HttpApi.PostAsync(Http, path, "{}"), 404);
    }
}
