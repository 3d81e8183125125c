using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>
/// What continuous batching, streaming and stop handling must not change: greedy text is the same alone or
/// batched, streamed or not, and the context limit is exact.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class GenerationConsistencyTests(ServerFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    private HttpClient Http => fixture.Http;

    private static string ChoiceText(JsonNode body) =>
        body["object"]!.GetValue<string>() == "chat.completion"
            ? HttpApi.Text(body["choices"]![0]!["message"]!["content"])
            : HttpApi.Text(body["choices"]![0]!["text"]);

    private async Task<string> StreamedTextAsync(string path, JsonObject request)
    {
        var streaming = request.DeepClone().AsObject();
        streaming["stream"] = true;
        var response = await HttpApi.PostAsync(Http, path, streaming);
        Assert.True(response.Status == 200, response.ToString());
        var payloads = HttpApi.ParseSse(response.Body);
        Assert.Equal("[DONE]", payloads[^1]);
        var text = new StringBuilder();
        foreach (var p in payloads[..^1])
            foreach (var choice in JsonNode.Parse(p)!["choices"]!.AsArray())
                text.Append(path == HttpApi.Chat ? choice!["delta"]!["content"]?.GetValue<string>() : choice!["text"]?.GetValue<string>());
        return text.ToString();
    }

    /// <param name="Tokens">Generated token texts.</param>
    /// <param name="Logprobs">Logprob of each generated token.</param>
    /// <param name="Margins">Logprob of the greedy choice minus that of the runner-up, at each position.</param>
    private sealed record GreedyRun(string[] Tokens, double[] Logprobs, double[] Margins);

    private static async Task<GreedyRun> GreedyTokensAsync(HttpClient http, string prompt, int maxTokens)
    {
        var body = HttpApi.CompletionBody(prompt, maxTokens);
        body["logprobs"] = 2;
        var lp = (await HttpApi.PostOkAsync(http, HttpApi.Completions, body))["choices"]![0]!["logprobs"]!;
        return new GreedyRun(lp["tokens"]!.AsArray().Select(HttpApi.Text).ToArray(),
            lp["token_logprobs"]!.AsArray().Select(t => t!.GetValue<double>()).ToArray(),
            lp["top_logprobs"]!.AsArray().Select(top =>
            {
                var best = top!.AsObject().Select(kv => kv.Value!.GetValue<double>()).OrderDescending().ToArray();
                return best.Length > 1 ? best[0] - best[1] : double.PositiveInfinity;
            }).ToArray());
    }

    /// <summary>
    /// The default model and configuration: 16 prompts alone, then all at once (one batch of 16 decoding
    /// sequences). Tokens must be the same and logprobs within <see cref="Tolerances.BatchedLogprob"/>. The one
    /// allowed difference is a near-tie: where the alone run's greedy choice leads the runner-up by less than twice
    /// that tolerance, batching may tip the choice, and the rest of that output then differs; a divergence
    /// anywhere else fails. Scripture openings, which the shipped model continues confidently, make it rare.
    /// </summary>
    [Fact]
    public async Task Greedy_tokens_are_the_same_alone_and_batched_with_15_others()
    {
        var (alone, together) = await AloneThenBatchedAsync(Http);
        double worst = 0;
        int compared = 0, total = 0;
        for (int i = 0; i < alone.Length; i++)
        {
            int length = Math.Min(alone[i].Tokens.Length, together[i].Tokens.Length);
            int diverged = Enumerable.Range(0, length).FirstOrDefault(t => alone[i].Tokens[t] != together[i].Tokens[t], -1);
            if (diverged >= 0)
            {
                // Both logprobs of a near-tie may move by the tolerance, so a margin under twice it may tip.
                Assert.True(alone[i].Margins[diverged] < 2 * Tolerances.BatchedLogprob,
                    $"prompt {i}: token {diverged} is '{together[i].Tokens[diverged]}' batched, '{alone[i].Tokens[diverged]}' alone, which led by {alone[i].Margins[diverged]:F3}");
                output.WriteLine($"prompt {i}: tipped at token {diverged} ('{alone[i].Tokens[diverged]}' alone, '{together[i].Tokens[diverged]}' batched), where it led by {alone[i].Margins[diverged]:F4}");
                length = diverged;
            }
            else Assert.Equal(alone[i].Tokens.Length, together[i].Tokens.Length);
            for (int t = 0; t < length; t++)
                worst = Math.Max(worst, Math.Abs(alone[i].Logprobs[t] - together[i].Logprobs[t]));
            compared += length;
            total += alone[i].Tokens.Length;
        }
        output.WriteLine($"16 prompts x 24 tokens: the same greedy tokens at {compared} of {total} positions (the rest after a near-tie); largest logprob difference {worst:E2} (tolerance {Tolerances.BatchedLogprob:E0})");
        Assert.True(worst <= Tolerances.BatchedLogprob, $"logprobs differ by up to {worst:E2}");
        Assert.True(compared * 10 >= total * 9, $"only {compared} of {total} positions agree before a near-tie tipped");
    }

    /// <summary>Scripture openings, which the shipped model continues confidently; 24 greedy tokens each.</summary>
    private static readonly string[] BatchingPrompts =
    [
        "In the beginning", "And God said", "And it came to pass", "Blessed are the", "The LORD is my",
        "And Jesus answered", "Now the serpent", "And Moses said unto", "For God so loved", "Thus saith the LORD",
        "And the children of Israel", "Then spake Jesus", "And he said unto them", "Behold, I send", "And the king said", "Hear, O Israel",
    ];

    /// <summary>The 16 prompts one at a time, then all at once (one batch of 16 decoding sequences).</summary>
    private static async Task<(GreedyRun[] Alone, GreedyRun[] Together)> AloneThenBatchedAsync(HttpClient http)
    {
        var alone = new List<GreedyRun>();
        foreach (var p in BatchingPrompts) alone.Add(await GreedyTokensAsync(http, p, 24));
        var together = await Task.WhenAll(BatchingPrompts.Select(p => GreedyTokensAsync(http, p, 24)));
        return ([.. alone], together);
    }

    /// <summary>
    /// Model:BatchInvariant: the same 16 prompts give exactly the same tokens alone and batched, and logprobs
    /// within 1e-4 (the hidden states are bit-identical; measured 0, as the output layer's FBGEMM product is too),
    /// even with bfloat16 experts, whose rounding otherwise turns float32 differences into near-tie flips. The
    /// prompts join whole (a 256-token prefill budget): the mode covers what shares a step, not where a prompt's
    /// chunks fall (a later chunk attends over cached keys, which rounds differently).
    /// </summary>
    [Fact]
    public async Task Batch_invariant_mode_gives_the_same_tokens_and_logprobs_alone_and_batched()
    {
        await using var server = await ServerProcess.StartAsync("batch-invariant", "--Model:BatchInvariant=true", "--Model:ExpertDtype=bfloat16",
            "--Engine:PrefillChunkTokens=256");
        using var http = new HttpClient { BaseAddress = server.BaseUri, Timeout = TimeSpan.FromSeconds(120) };
        var (alone, together) = await AloneThenBatchedAsync(http);
        double worst = 0;
        for (int i = 0; i < alone.Length; i++)
        {
            Assert.Equal(alone[i].Tokens, together[i].Tokens);
            worst = Math.Max(worst, alone[i].Logprobs.Zip(together[i].Logprobs).Max(p => Math.Abs(p.First - p.Second)));
        }
        output.WriteLine($"batch-invariant: 16 prompts, the same tokens; largest logprob difference {worst:E2}");
        Assert.True(worst < 1e-4, $"logprobs differ by up to {worst:E2}");
    }

    [Fact]
    public async Task Concurrent_greedy_requests_give_the_same_text_as_one_at_a_time()
    {
        string[] prompts = ["The first expert", "Numbers: 1 2 3 4 5 6", "A much longer prompt that takes more than one chunk of prefill work for the scheduler to get through", "x"];
        var alone = new List<string>();
        foreach (var p in prompts)
            alone.Add(ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(p, maxTokens: 20))));

        // The same requests at once: they share engine steps (mixed prefill and decode batches).
        var together = await Task.WhenAll(prompts.Select(async p =>
            ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(p, maxTokens: 20)))));
        Assert.Equal(alone, together);

        // And once more with a chat request and a streamed one mixed in.
        var mixed = await Task.WhenAll(
            Task.Run(async () => ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(prompts[0], maxTokens: 20)))),
            StreamedTextAsync(HttpApi.Completions, HttpApi.CompletionBody(prompts[2], maxTokens: 20)),
            Task.Run(async () => ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Chat, HttpApi.ChatBody("hello", maxTokens: 20)))));
        Assert.Equal(alone[0], mixed[0]);
        Assert.Equal(alone[2], mixed[1]);
    }

    [Theory]
    [InlineData("plain ascii")]
    [InlineData("Ünïcödé — 混合专家 🙂")]
    [InlineData("tabs\tand\nnewlines\r\n")]
    public async Task Streamed_greedy_text_equals_the_whole_text_for_longer_generations(string prompt)
    {
        var chat = HttpApi.ChatBody(prompt, maxTokens: 40);
        Assert.Equal(ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Chat, chat)), await StreamedTextAsync(HttpApi.Chat, chat));
        var completion = HttpApi.CompletionBody(prompt, maxTokens: 40);
        Assert.Equal(ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Completions, completion)), await StreamedTextAsync(HttpApi.Completions, completion));
    }

    [Fact]
    public async Task Streamed_text_with_a_stop_sequence_never_shows_the_stop_sequence()
    {
        const string prompt = "Once upon a time";
        string free = ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(prompt, maxTokens: 30)));
        // A two-character stop sequence from the middle of the text, so that it may span two tokens.
        int at = Enumerable.Range(3, Math.Max(0, free.Length - 4)).FirstOrDefault(i => char.IsAsciiLetterOrDigit(free[i]) && char.IsAsciiLetterOrDigit(free[i + 1]), -1);
        Assert.True(at >= 0, $"no usable stop sequence in '{free}'");
        string stop = free.Substring(at, 2);
        string expected = free[..free.IndexOf(stop, StringComparison.Ordinal)];

        var request = HttpApi.CompletionBody(prompt, maxTokens: 30);
        request["stop"] = new JsonArray(stop);
        var whole = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        Assert.Equal(expected, ChoiceText(whole));
        Assert.Equal("stop", HttpApi.Text(whole["choices"]![0]!["finish_reason"]));
        Assert.Equal(expected, await StreamedTextAsync(HttpApi.Completions, request));
    }

    [Fact]
    public async Task Streamed_echo_starts_with_the_prompt_and_equals_the_whole_echo()
    {
        var request = HttpApi.CompletionBody("echo this", maxTokens: 5);
        request["echo"] = true;
        string whole = ChoiceText(await HttpApi.PostOkAsync(Http, HttpApi.Completions, request));
        Assert.StartsWith("echo this", whole);
        Assert.Equal(whole, await StreamedTextAsync(HttpApi.Completions, request));
    }

    private static JsonArray TokenIds(int n) => new(Enumerable.Range(0, n).Select(i => (JsonNode)(65 + i % 26)).ToArray());

    [Fact]
    public async Task Context_limit_is_exact()
    {
        int context = RepoPaths.ModelContextLength;

        // prompt + max_tokens == context fits. (echo + logprobs makes every prefill chunk produce logits rows, which
        // keeps this test about the limit and independent of the chunked-prefill test below.)
        var request = HttpApi.CompletionBody(TokenIds(context - 2), maxTokens: 2);
        request["echo"] = true;
        request["logprobs"] = 0;
        var fits = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        Assert.Equal(context - 2, HttpApi.Int(fits["usage"]!["prompt_tokens"]));
        Assert.InRange(HttpApi.Int(fits["usage"]!["completion_tokens"]), 1, 2);

        // one more token does not
        var over = await HttpApi.PostAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(TokenIds(context - 2), maxTokens: 3));
        var error = HttpApi.AssertOpenAiError(over, 400, "context_length_exceeded");
        Assert.Contains(context.ToString(), HttpApi.Text(error["message"]));

        var full = await HttpApi.PostAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(TokenIds(context), maxTokens: 1));
        HttpApi.AssertOpenAiError(full, 400, "context_length_exceeded");
    }

    [Theory]
    [InlineData(1025, false)]
    [InlineData(1500, false)]
    [InlineData(1500, true)]
    public async Task Prompt_longer_than_one_prefill_chunk_is_served(int promptTokens, bool echoLogprobs)
    {
        // Engine:MaxBatchedTokens is 1024 by default, so these prompts are prefilled in two steps.
        var request = HttpApi.CompletionBody(TokenIds(promptTokens), maxTokens: 2);
        if (echoLogprobs)
        {
            request["echo"] = true;
            request["logprobs"] = 0;
        }
        var response = await HttpApi.PostAsync(Http, HttpApi.Completions, request);
        Assert.True(response.Status == 200, $"{promptTokens}-token prompt (echo+logprobs: {echoLogprobs}) -> {response}");
        Assert.Equal(promptTokens, HttpApi.Int(response.Json["usage"]!["prompt_tokens"]));
    }

    [Fact]
    public async Task Chat_prompt_longer_than_one_prefill_chunk_is_served()
    {
        // About 1350 tokens with the chat template: more than one 1024-token prefill chunk, less than the 2048 context.
        var chat = HttpApi.ChatBody(string.Concat(Enumerable.Repeat("abcdefghij ", 150)), maxTokens: 2);
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, chat);
        Assert.True(response.Status == 200, $"chat with a ~1350-token prompt -> {response}");
        Assert.InRange(HttpApi.Int(response.Json["usage"]!["prompt_tokens"]), 1025, 2040);
    }

    [Fact]
    public async Task Chunked_body_over_the_limit_is_413()
    {
        // No Content-Length: Kestrel finds out while the JSON is being read.
        var payload = Encoding.UTF8.GetBytes(HttpApi.ChatBody(new string('y', ServerFixture.MaxRequestBodyBytes * 2), maxTokens: 1).ToJsonString());
        using var request = new HttpRequestMessage(HttpMethod.Post, HttpApi.Completions)
        {
            Content = new StreamContent(new MemoryStream(payload)),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.TransferEncodingChunked = true;
        using var response = await Http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        HttpApi.AssertOpenAiError(new ApiResponse((int)response.StatusCode, response.Headers, response.Content.Headers, body), 413, "request_too_large");
    }

    [Fact]
    public async Task Capacity_factor_header_with_vanilla_is_accepted_and_reported_as_none()
    {
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1),
            [new("X-Routing-Policy", "vanilla"), new("X-Capacity-Factor", "1.5")]);
        Assert.True(response.Status == 200, response.ToString());
        Assert.Equal("vanilla", response.Header("X-Routing-Policy"));
        Assert.Equal("none", response.Header("X-Capacity-Factor"));
        Assert.Null(response.Json["moe_routing"]!["capacity_factor"]);
    }
}
