using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>Raw HTTP: /v1/completions with every prompt form, echo, legacy logprobs, n, stop, seeds.</summary>
[Collection(ServerCollection.Name)]
public sealed class CompletionsContractTests(ServerFixture fixture)
{
    private HttpClient Http => fixture.Http;

    private static JsonArray Ids(params int[] ids) => new(ids.Select(i => (JsonNode)i).ToArray());

    private static void AssertTextCompletion(JsonNode body, int expectedChoices)
    {
        Assert.Equal("text_completion", HttpApi.Text(body["object"]));
        Assert.StartsWith("cmpl-", HttpApi.Text(body["id"]));
        Assert.Equal(RepoPaths.ModelId, HttpApi.Text(body["model"]));
        var choices = body["choices"]!.AsArray();
        Assert.Equal(expectedChoices, choices.Count);
        Assert.Equal(Enumerable.Range(0, expectedChoices).ToArray(), choices.Select(c => HttpApi.Int(c!["index"])).ToArray());
        foreach (var c in choices)
        {
            Assert.NotNull(c!["text"]);
            Assert.Contains(HttpApi.Text(c["finish_reason"]), new[] { "length", "stop" });
        }
        var usage = body["usage"]!;
        Assert.Equal(HttpApi.Int(usage["prompt_tokens"]) + HttpApi.Int(usage["completion_tokens"]), HttpApi.Int(usage["total_tokens"]));
    }

    [Fact]
    public async Task String_prompt()
    {
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody("The experts are", maxTokens: 5));
        AssertTextCompletion(body, 1);
        Assert.False(string.IsNullOrEmpty(HttpApi.Text(body["choices"]![0]!["text"])));
        Assert.Equal(5, HttpApi.Int(body["usage"]!["completion_tokens"]));
        Assert.Equal("length", HttpApi.Text(body["choices"]![0]!["finish_reason"]));
    }

    [Fact]
    public async Task Default_max_tokens_is_16()
    {
        var request = new JsonObject { ["model"] = RepoPaths.ModelId, ["prompt"] = "abc", ["temperature"] = 0 };
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        if (HttpApi.Text(body["choices"]![0]!["finish_reason"]) == "length") Assert.Equal(16, HttpApi.Int(body["usage"]!["completion_tokens"]));
        else Assert.InRange(HttpApi.Int(body["usage"]!["completion_tokens"]), 0, 16);
    }

    [Fact]
    public async Task List_of_strings_gives_one_choice_per_prompt_matching_single_prompt_runs()
    {
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(new JsonArray("first prompt", "second one"), maxTokens: 4));
        AssertTextCompletion(body, 2);
        Assert.Equal(8, HttpApi.Int(body["usage"]!["completion_tokens"]));
        // Greedy: each choice is what that prompt alone produces.
        var alone = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody("second one", maxTokens: 4));
        Assert.Equal(HttpApi.Text(alone["choices"]![0]!["text"]), HttpApi.Text(body["choices"]![1]!["text"]));
    }

    [Fact]
    public async Task Token_id_prompt_counts_its_tokens()
    {
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(Ids(10, 20, 30, 40), maxTokens: 3));
        AssertTextCompletion(body, 1);
        Assert.Equal(4, HttpApi.Int(body["usage"]!["prompt_tokens"]));
        Assert.Equal(3, HttpApi.Int(body["usage"]!["completion_tokens"]));
    }

    [Fact]
    public async Task Token_ids_of_a_text_prompt_give_the_same_greedy_completion_as_the_text()
    {
        // echo + logprobs reveals how the text was tokenised; sending those ids back must give the same continuation.
        var request = HttpApi.CompletionBody("hello world", maxTokens: 5);
        request["echo"] = true;
        request["logprobs"] = 0;
        var withEcho = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        int promptTokens = HttpApi.Int(withEcho["usage"]!["prompt_tokens"]);
        var byText = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody("hello world", maxTokens: 5));
        Assert.Equal(promptTokens, HttpApi.Int(byText["usage"]!["prompt_tokens"]));
        string echoed = HttpApi.Text(withEcho["choices"]![0]!["text"]);
        Assert.Equal("hello world" + HttpApi.Text(byText["choices"]![0]!["text"]), echoed);
    }

    [Fact]
    public async Task List_of_token_id_lists_gives_one_choice_per_prompt()
    {
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(new JsonArray(Ids(1, 2, 3), Ids(4, 5)), maxTokens: 2));
        AssertTextCompletion(body, 2);
        Assert.Equal(5, HttpApi.Int(body["usage"]!["prompt_tokens"]));
        Assert.Equal(4, HttpApi.Int(body["usage"]!["completion_tokens"]));
    }

    [Fact]
    public async Task Echo_with_legacy_logprobs()
    {
        const string prompt = "hello world";
        var request = HttpApi.CompletionBody(prompt, maxTokens: 4);
        request["echo"] = true;
        request["logprobs"] = 2;
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        AssertTextCompletion(body, 1);
        var choice = body["choices"]![0]!;
        string text = HttpApi.Text(choice["text"]);
        Assert.StartsWith(prompt, text);

        var lp = choice["logprobs"]!;
        var tokens = lp["tokens"]!.AsArray().Select(t => HttpApi.Text(t)).ToList();
        var tokenLogprobs = lp["token_logprobs"]!.AsArray();
        var top = lp["top_logprobs"]!.AsArray();
        var offsets = lp["text_offset"]!.AsArray().Select(o => HttpApi.Int(o)).ToList();
        int promptTokens = HttpApi.Int(body["usage"]!["prompt_tokens"]);
        Assert.Equal(promptTokens + 4, tokens.Count);
        Assert.Equal(tokens.Count, tokenLogprobs.Count);
        Assert.Equal(tokens.Count, top.Count);
        Assert.Equal(tokens.Count, offsets.Count);

        // The first prompt token has no logprob (nothing precedes it); the others do.
        Assert.Null(tokenLogprobs[0]);
        Assert.Null(top[0]);
        for (int i = 1; i < tokens.Count; i++)
        {
            float value = tokenLogprobs[i]!.GetValue<float>();
            Assert.True(value <= 0, $"token_logprobs[{i}] = {value}");
            var alternatives = top[i]!.AsObject();
            Assert.InRange(alternatives.Count, 1, 2);
            if (i >= promptTokens) // generated greedily: the chosen token is the most likely one
                Assert.True(value >= alternatives.Max(a => a.Value!.GetValue<float>()) - 1e-4f, $"token {i}: {value} vs {alternatives.ToJsonString()}");
        }

        // The prompt's tokens spell the prompt, and text_offset points at each token in the returned text.
        Assert.Equal(prompt, string.Concat(tokens.Take(promptTokens)));
        Assert.Equal(0, offsets[0]);
        for (int i = 0; i < promptTokens; i++)
            Assert.Equal(tokens[i], text.Substring(offsets[i], tokens[i].Length));
        for (int i = 1; i < offsets.Count; i++) Assert.True(offsets[i] >= offsets[i - 1], "text_offset must not decrease");
        Assert.Equal(prompt.Length, offsets[promptTokens]);
    }

    [Fact]
    public async Task Logprobs_without_echo_cover_only_generated_tokens()
    {
        var request = HttpApi.CompletionBody("abc", maxTokens: 3);
        request["logprobs"] = 1;
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        var lp = body["choices"]![0]!["logprobs"]!;
        Assert.Equal(3, lp["tokens"]!.AsArray().Count);
        Assert.All(lp["token_logprobs"]!.AsArray(), v => Assert.True(v!.GetValue<float>() <= 0));
        Assert.All(lp["top_logprobs"]!.AsArray(), v => Assert.Single(v!.AsObject()));
        Assert.Equal(0, HttpApi.Int(lp["text_offset"]![0]));
        Assert.Equal(HttpApi.Text(body["choices"]![0]!["text"]), string.Concat(lp["tokens"]!.AsArray().Select(t => HttpApi.Text(t))));
    }

    [Fact]
    public async Task N_2_gives_two_choices_per_prompt()
    {
        var request = HttpApi.CompletionBody("abc", maxTokens: 3, temperature: 1);
        request["n"] = 2;
        // Sampled at temperature 1, a choice may draw the end-of-text token before its third; 3 + 3 tokens needs it ignored.
        request["ignore_eos"] = true;
        var body = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
        AssertTextCompletion(body, 2);
        Assert.Equal(6, HttpApi.Int(body["usage"]!["completion_tokens"]));
    }

    [Fact]
    public async Task Stop_string_ends_the_text_before_it()
    {
        const string prompt = "Once upon a time";
        var free = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody(prompt, maxTokens: 30));
        string text = HttpApi.Text(free["choices"]![0]!["text"]);
        // Pick a visible character from the middle of the greedy text as the stop sequence.
        int at = Enumerable.Range(2, Math.Max(0, text.Length - 2)).FirstOrDefault(i => char.IsAsciiLetterOrDigit(text[i]), -1);
        Assert.True(at >= 0, $"no usable stop character in '{text}'");
        string stop = text[at].ToString();
        string expected = text[..text.IndexOf(stop, StringComparison.Ordinal)];

        foreach (JsonNode stopValue in new JsonNode[] { JsonValue.Create(stop)!, new JsonArray("\u0001never\u0001", stop) })
        {
            var request = HttpApi.CompletionBody(prompt, maxTokens: 30);
            request["stop"] = stopValue;
            var stopped = await HttpApi.PostOkAsync(Http, HttpApi.Completions, request);
            Assert.Equal(expected, HttpApi.Text(stopped["choices"]![0]!["text"]));
            Assert.Equal("stop", HttpApi.Text(stopped["choices"]![0]!["finish_reason"]));
        }
    }

    [Fact]
    public async Task Same_seed_reproduces_and_different_seeds_differ()
    {
        async Task<string> Sample(long seed, string path)
        {
            var request = path == HttpApi.Chat ? HttpApi.ChatBody(maxTokens: 12, temperature: 1) : HttpApi.CompletionBody("The", maxTokens: 12, temperature: 1);
            request["seed"] = seed;
            var body = await HttpApi.PostOkAsync(Http, path, request);
            var choice = body["choices"]![0]!;
            return path == HttpApi.Chat ? HttpApi.Text(choice["message"]!["content"]) : HttpApi.Text(choice["text"]);
        }

        foreach (var path in new[] { HttpApi.Completions, HttpApi.Chat })
        {
            string a = await Sample(1234, path), b = await Sample(1234, path);
            Assert.Equal(a, b);
            var others = new List<string>();
            foreach (long seed in new long[] { 1, 2, 3 }) others.Add(await Sample(seed, path));
            Assert.Contains(others, o => o != a);
        }
    }

    [Fact]
    public async Task Streaming_completions_end_with_done_and_match_the_non_streamed_text()
    {
        var request = HttpApi.CompletionBody("stream me", maxTokens: 6);
        request["stream"] = true;
        request["stream_options"] = new JsonObject { ["include_usage"] = true };
        var response = await HttpApi.PostAsync(Http, HttpApi.Completions, request);
        Assert.Equal(200, response.Status);
        var payloads = HttpApi.ParseSse(response.Body);
        Assert.Equal("[DONE]", payloads[^1]);
        var chunks = payloads[..^1].Select(p => JsonNode.Parse(p)!).ToList();
        Assert.All(chunks, c => Assert.Equal("text_completion", HttpApi.Text(c["object"])));
        Assert.Empty(chunks[^1]["choices"]!.AsArray());
        Assert.Equal(6, HttpApi.Int(chunks[^1]["usage"]!["completion_tokens"]));
        string streamed = string.Concat(chunks[..^1].Select(c => HttpApi.Text(c["choices"]![0]!["text"])));
        Assert.Equal("length", HttpApi.Text(chunks[^2]["choices"]![0]!["finish_reason"]));

        var whole = await HttpApi.PostOkAsync(Http, HttpApi.Completions, HttpApi.CompletionBody("stream me", maxTokens: 6));
        Assert.Equal(HttpApi.Text(whole["choices"]![0]!["text"]), streamed);
    }
}
