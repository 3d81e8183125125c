using System.Text.Json;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Model;
using MoeServe.Inference.Sampling;
using MoeServe.Inference.Tokenization;
using TorchSharp;

namespace MoeServe.Unit.Tests;

/// <summary>
/// The engine's greedy decoding and logprobs against an independent Python implementation of the Hugging
/// Face semantics (scripts/reference/hf_reference.py), on checkpoints the server has never seen: random
/// Mixtral weights in sharded BF16, random OLMoE weights in F32, and tied-embedding OLMoE in F16.
/// </summary>
public class ReferenceNumericsTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const double Tolerance = 2e-3;

    public static TheoryData<string, int, torch.ScalarType> Fixtures => new()
    {
        { "mixtral-tiny-bf16-sharded", 1024, torch.ScalarType.Float32 },
        { "olmoe-tiny-f32", 1024, torch.ScalarType.Float32 },
        { "olmoe-tiny-f16-tied", 1024, torch.ScalarType.Float32 },
        // A 16-token step budget splits the longer prompts into chunks: chunked prefill must not change a thing.
        { "mixtral-tiny-bf16-sharded", 16, torch.ScalarType.Float32 },
        { "olmoe-tiny-f32", 16, torch.ScalarType.Float32 },
        // Float16 experts (FBGEMM on CPU) of a checkpoint stored in 16 bits hold its weights exactly and multiply
        // in float32, so they meet the float32 tolerance (what Model:ExpertDtype=auto picks for these on CPU).
        { "mixtral-tiny-bf16-sharded", 1024, torch.ScalarType.Float16 },
        { "olmoe-tiny-f16-tied", 1024, torch.ScalarType.Float16 },
        { "mixtral-tiny-bf16-sharded", 16, torch.ScalarType.Float16 },
    };

    private sealed record Case(int[] PromptIds, double?[] PromptLogprobs, int[] GreedyIds, double[] GreedyLogprobs, double[][][] GreedyTop5);

    private static IReadOnlyList<Case> LoadCases(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            c.GetProperty("prompt_logprobs").EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Null ? (double?)null : x.GetDouble()).ToArray(),
            c.GetProperty("greedy_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            c.GetProperty("greedy_logprobs").EnumerateArray().Select(x => x.GetDouble()).ToArray(),
            c.GetProperty("greedy_top5").EnumerateArray().Select(step => step.EnumerateArray()
                .Select(pair => pair.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray()).ToArray()
        )).ToList();
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public async Task Greedy_tokens_and_logprobs_match_the_reference(string fixture, int maxBatchedTokens, torch.ScalarType expertDtype)
    {
        string dir = RepositoryPaths.Fixture(fixture);
        using var model = MoeForCausalLM.Load(dir, torch.ScalarType.Float32, torch.CPU, expertDtype: expertDtype);
        var tokenizer = ModelTokenizer.Load(dir, model.Config);
        using var engine = new InferenceEngine(model, tokenizer,
            new EngineOptions { MaxBatchedTokens = maxBatchedTokens, MaxRunningSequences = 8, MaxQueuedRequests = 16 }, NullEngineObserver.Instance);

        var cases = LoadCases(dir);
        // All cases run concurrently, so they also share engine steps (batched prefill and decode).
        var runs = cases.Select(c => Collect(engine.Submit(new GenerationRequest
        {
            PromptIds = c.PromptIds,
            Sampling = new SamplingParameters { Temperature = 0, TopLogprobs = 5 },
            MaxTokens = c.GreedyIds.Length,
            PromptLogprobs = true,
        }, CancellationToken.None))).ToList();
        var results = await Task.WhenAll(runs);

        double worst = 0;
        for (int i = 0; i < cases.Count; i++)
        {
            var (c, (tokens, prompt)) = (cases[i], results[i]);
            // EOS ends generation early; the reference generated past it, so compare the common prefix.
            Assert.Equal(c.GreedyIds.Take(tokens.Count), tokens.Select(t => t.TokenId));
            Assert.True(tokens.Count == c.GreedyIds.Length || tokenizer.EosIds.Contains(tokens[^1].TokenId));
            for (int s = 0; s < tokens.Count; s++)
            {
                worst = Math.Max(worst, Math.Abs(tokens[s].Logprob - c.GreedyLogprobs[s]));
                Assert.Equal(c.GreedyTop5[s].Select(p => (int)p[0]), tokens[s].TopLogprobs.Select(t => t.TokenId));
                for (int j = 0; j < 5; j++) worst = Math.Max(worst, Math.Abs(tokens[s].TopLogprobs[j].Logprob - c.GreedyTop5[s][j][1]));
            }
            Assert.NotNull(prompt);
            Assert.Equal(c.PromptIds.Length, prompt!.Count);
            Assert.Null(prompt[0].Logprob);
            for (int p = 1; p < prompt.Count; p++) worst = Math.Max(worst, Math.Abs(prompt[p].Logprob!.Value - c.PromptLogprobs[p]!.Value));
        }
        output.WriteLine($"{fixture} (step budget {maxBatchedTokens}, {expertDtype} experts): largest logprob difference {worst:E2}");
        Assert.True(worst < Tolerance, $"largest logprob difference {worst:E2} exceeds {Tolerance:E0}");
    }

    private static async Task<(List<SampledToken> Tokens, IReadOnlyList<PromptTokenLogprob>? Prompt)> Collect(System.Threading.Channels.ChannelReader<SequenceEvent> reader)
    {
        var tokens = new List<SampledToken>();
        IReadOnlyList<PromptTokenLogprob>? prompt = null;
        await foreach (var e in reader.ReadAllAsync())
        {
            if (e.Token is not null) tokens.Add(e.Token);
            prompt ??= e.PromptLogprobs;
            Assert.NotEqual("error", e.FinishReason);
        }
        return (tokens, prompt);
    }

    /// <summary>
    /// Token drop at capacity factor 1.0 over a 40-token prompt run as one step (T = 40): prompt logprobs
    /// and the number of dropped pairs per layer agree with the reference's reading of the spec.
    /// </summary>
    [Fact]
    public async Task Token_drop_prefill_matches_the_reference()
    {
        string dir = RepositoryPaths.Fixture("olmoe-tiny-f32");
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected_token_drop.json")));
        var c = doc.RootElement.GetProperty("cases")[0];
        var prompt = c.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var expected = c.GetProperty("prompt_logprobs").EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Null ? (double?)null : x.GetDouble()).ToArray();
        var vanilla = c.GetProperty("vanilla_prompt_logprobs").EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Null ? (double?)null : x.GetDouble()).ToArray();
        long expectedDropped = c.GetProperty("dropped_pairs_per_layer").EnumerateArray().Sum(x => x.GetInt64());

        using var model = MoeForCausalLM.Load(dir, torch.ScalarType.Float32, torch.CPU);
        var tokenizer = ModelTokenizer.Load(dir, model.Config);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions(), NullEngineObserver.Instance);
        var reader = engine.Submit(new GenerationRequest
        {
            PromptIds = prompt,
            Sampling = new SamplingParameters { Temperature = 0 },
            MaxTokens = 1,
            PromptLogprobs = true,
            Policy = MoeServe.Routing.RoutingPolicy.TokenDrop,
            CapacityFactor = 1.0,
        }, CancellationToken.None);
        IReadOnlyList<PromptTokenLogprob>? logprobs = null;
        long dropped = 0;
        await foreach (var e in reader.ReadAllAsync())
        {
            logprobs ??= e.PromptLogprobs;
            dropped = Math.Max(dropped, e.DroppedPairs);
        }
        Assert.NotNull(logprobs);
        double worst = 0, fromVanilla = 0;
        for (int p = 1; p < prompt.Length; p++)
        {
            worst = Math.Max(worst, Math.Abs(logprobs![p].Logprob!.Value - expected[p]!.Value));
            fromVanilla = Math.Max(fromVanilla, Math.Abs(expected[p]!.Value - vanilla[p]!.Value));
        }
        output.WriteLine($"token_drop prefill: largest logprob difference {worst:E2} (token drop moves logprobs by up to {fromVanilla:F3} from vanilla); dropped pairs {dropped}, reference {expectedDropped}");
        Assert.True(fromVanilla > 10 * Tolerance, "the fixture must be one where dropping changes the output");
        Assert.True(worst < Tolerance, $"largest logprob difference {worst:E2}");
        Assert.Equal(expectedDropped, dropped);
    }

    /// <summary>
    /// bfloat16 against the float32 reference: everything in bfloat16, or only the experts (Model:ExpertDtype),
    /// whose weights a BF16 checkpoint stores exactly, so only their products round.
    /// </summary>
    /// <param name="bound">Largest prompt logprob difference allowed: bfloat16 keeps 8 bits of mantissa, so
    /// differences of a few hundredths are expected, not 1e-3.</param>
    [Theory]
    [InlineData("olmoe-tiny-f32", torch.ScalarType.BFloat16, torch.ScalarType.BFloat16, 0.25)]
    [InlineData("mixtral-tiny-bf16-sharded", torch.ScalarType.Float32, torch.ScalarType.BFloat16, 0.05)]
    [InlineData("olmoe-tiny-f32", torch.ScalarType.Float32, torch.ScalarType.BFloat16, 0.05)]
    public void Bfloat16_stays_close_to_the_fp32_reference(string fixture, torch.ScalarType dtype, torch.ScalarType expertDtype, double bound)
    {
        string dir = RepositoryPaths.Fixture(fixture);
        var c = LoadCases(dir)[1];
        using var model = MoeForCausalLM.Load(dir, dtype, torch.CPU, expertDtype: expertDtype);
        using var scope = torch.NewDisposeScope();
        using var cache = model.NewCache(blocks: 1 + (c.PromptIds.Length + 15) / 16, blockSize: 16);
        var blocks = Enumerable.Range(1, cache.Blocks - 1).ToList();
        var batch = new ForwardBatch
        {
            TokenIds = c.PromptIds.Select(x => (long)x).ToArray(),
            Sequences = [new SequenceSlice(0, c.PromptIds.Length, 0, cache.Slots(blocks, c.PromptIds.Length))],
            Cache = cache,
            LogitRows = Enumerable.Range(0, c.PromptIds.Length).Select(x => (long)x).ToArray(),
        };
        var logits = model.Forward(batch).data<float>().ToArray();
        int vocab = model.Config.VocabSize;
        double worst = 0;
        for (int p = 1; p < c.PromptIds.Length; p++)
        {
            var lp = Sampler.LogSoftmax(logits.AsSpan((p - 1) * vocab, vocab));
            worst = Math.Max(worst, Math.Abs(lp[c.PromptIds[p]] - c.PromptLogprobs[p]!.Value));
        }
        output.WriteLine($"{fixture}, {dtype} with {expertDtype} experts: largest prompt logprob difference {worst:F4}");
        Assert.True(worst < bound, $"prompt logprobs differ by up to {worst:F3}");
        Assert.True(worst > 0, "the experts did not run in bfloat16"); // exact agreement would mean float32 ran
    }
}
