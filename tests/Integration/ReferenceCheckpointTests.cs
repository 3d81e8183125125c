using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>
/// "--Model:Path=DIR serves any Hugging Face style checkpoint": the server started on each tiny reference
/// checkpoint (sharded BF16 Mixtral, F32 OLMoE, F16 tied OLMoE) answers over HTTP with the greedy tokens and
/// logprobs that the float32 Hugging Face reference computed (tests/fixtures/*/expected.json), under the default
/// Model:ExpertDtype: float16 experts (FBGEMM, float32 arithmetic on the exact stored weights) for the BF16 and F16
/// checkpoints, float32 for the F32 one. ReferenceNumericsTests bounds what bfloat16 experts change.
/// </summary>
public sealed class ReferenceCheckpointTests
{
    private const double Tolerance = 2e-3; // float32 compute against a float32 reference

    [Theory]
    [InlineData("mixtral-tiny-bf16-sharded")]
    [InlineData("olmoe-tiny-f32")]
    [InlineData("olmoe-tiny-f16-tied")]
    public async Task Served_checkpoint_matches_the_hf_reference_over_http(string fixtureName)
    {
        string dir = Path.Combine(RepoPaths.Root, "tests", "fixtures", fixtureName);
        Assert.True(File.Exists(Path.Combine(dir, "expected.json")), $"reference fixture missing: {dir} (scripts/reference/make_fixtures.py writes it)");
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")))!;

        await using var server = await ServerProcess.StartAsync(fixtureName, $"--Model:Path=tests/fixtures/{fixtureName}");
        using var http = new HttpClient { BaseAddress = server.BaseUri, Timeout = TimeSpan.FromSeconds(60) };

        // The model id is the folder's name.
        var models = (await HttpApi.GetAsync(http, "/v1/models")).Json;
        Assert.Equal(fixtureName, HttpApi.Text(Assert.Single(models["data"]!.AsArray())!["id"]));

        foreach (var testCase in expected["cases"]!.AsArray())
        {
            var promptIds = testCase!["prompt_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            var greedyIds = testCase["greedy_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            var greedyLogprobs = testCase["greedy_logprobs"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            var promptLogprobs = testCase["prompt_logprobs"]!.AsArray().Select(x => x?.GetValue<double>()).ToArray();

            var request = new JsonObject
            {
                ["model"] = fixtureName,
                ["prompt"] = new JsonArray(promptIds.Select(i => (JsonNode)i).ToArray()),
                ["max_tokens"] = greedyIds.Length,
                ["temperature"] = 0,
                ["echo"] = true,
                ["logprobs"] = 1,
            };
            var body = await HttpApi.PostOkAsync(http, HttpApi.Completions, request);
            var lp = body["choices"]![0]!["logprobs"]!;
            var tokens = lp["tokens"]!.AsArray().Select(t => HttpApi.Text(t)).ToList();
            var logprobs = lp["token_logprobs"]!.AsArray().Select(t => t?.GetValue<double>()).ToList();
            Assert.Equal(promptIds.Length + greedyIds.Length, tokens.Count);
            Assert.Equal(greedyIds.Length, HttpApi.Int(body["usage"]!["completion_tokens"]));

            for (int i = 0; i < promptIds.Length; i++)
            {
                if (promptLogprobs[i] is null) { Assert.Null(logprobs[i]); continue; }
                Assert.True(Math.Abs(logprobs[i]!.Value - promptLogprobs[i]!.Value) < Tolerance,
                    $"{fixtureName}: prompt token {i}: server {logprobs[i]} vs reference {promptLogprobs[i]}");
            }
            for (int i = 0; i < greedyIds.Length; i++)
            {
                double served = logprobs[promptIds.Length + i]!.Value;
                Assert.True(Math.Abs(served - greedyLogprobs[i]) < Tolerance,
                    $"{fixtureName}: generated token {i}: server logprob {served} vs reference {greedyLogprobs[i]} (a different token was chosen, or the numerics drifted)");
            }

            // The generated tokens are the reference's: the server's texts for the reference ids, obtained by echoing them.
            var echo = new JsonObject
            {
                ["model"] = fixtureName,
                ["prompt"] = new JsonArray(greedyIds.Select(i => (JsonNode)i).ToArray()),
                ["max_tokens"] = 1,
                ["temperature"] = 0,
                ["echo"] = true,
                ["logprobs"] = 0,
            };
            var referenceTexts = (await HttpApi.PostOkAsync(http, HttpApi.Completions, echo))["choices"]![0]!["logprobs"]!["tokens"]!
                .AsArray().Take(greedyIds.Length).Select(t => HttpApi.Text(t)).ToList();
            Assert.Equal(referenceTexts, tokens.Skip(promptIds.Length).ToList());
        }

        // Chat works with the checkpoint's own chat template.
        var chat = await HttpApi.PostOkAsync(http, HttpApi.Chat, new JsonObject
        {
            ["model"] = fixtureName,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hello world" }),
            ["max_tokens"] = 4,
            ["temperature"] = 0,
        });
        Assert.InRange(HttpApi.Int(chat["usage"]!["completion_tokens"]), 1, 4);
        Assert.Equal("assistant", HttpApi.Text(chat["choices"]![0]!["message"]!["role"]));
    }
}
