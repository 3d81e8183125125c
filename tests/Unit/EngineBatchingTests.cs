using System.Threading.Channels;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Model;
using MoeServe.Inference.Sampling;
using MoeServe.Inference.Tokenization;
using TorchSharp;

namespace MoeServe.Unit.Tests;

/// <summary>Outputs must not depend on what else shares the engine's steps, on chunking, or on preemption.</summary>
public class EngineBatchingTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>Batched and single runs differ only by float summation order: logprobs agree to 1e-4.</summary>
    private const double LogprobTolerance = 1e-4;

    private static readonly string Dir = RepositoryPaths.Fixture("mixtral-tiny-bf16-sharded");

    private static int[] Prompt(int seed, int length)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => r.Next(0, 356)).ToArray(); // byte and merge ids, no specials
    }

    private static async Task<List<SampledToken>> Collect(ChannelReader<SequenceEvent> reader)
    {
        var tokens = new List<SampledToken>();
        await foreach (var e in reader.ReadAllAsync())
        {
            Assert.NotEqual("error", e.FinishReason);
            if (e.Token is not null) tokens.Add(e.Token);
        }
        return tokens;
    }

    private static GenerationRequest Greedy(int[] prompt, int maxTokens) => new()
    {
        PromptIds = prompt, Sampling = new SamplingParameters { Temperature = 0 }, MaxTokens = maxTokens,
    };

    private static async Task<List<List<SampledToken>>> RunAll(EngineOptions options, IReadOnlyList<int[]> prompts, int maxTokens,
        torch.ScalarType expertDtype = torch.ScalarType.Float32) =>
        (await RunAllCounting(options, prompts, maxTokens, expertDtype)).Outputs;

    private static async Task<(List<List<SampledToken>> Outputs, long Preemptions)> RunAllCounting(EngineOptions options, IReadOnlyList<int[]> prompts, int maxTokens,
        torch.ScalarType expertDtype = torch.ScalarType.Float32)
    {
        using var model = MoeForCausalLM.Load(Dir, torch.ScalarType.Float32, torch.CPU, expertDtype: expertDtype);
        var tokenizer = ModelTokenizer.Load(Dir, model.Config);
        using var engine = new InferenceEngine(model, tokenizer, options, NullEngineObserver.Instance);
        var runs = prompts.Select(p => Collect(engine.Submit(Greedy(p, maxTokens), CancellationToken.None))).ToList();
        var outputs = await Task.WhenAll(runs);
        return ([.. outputs], engine.Preemptions);
    }

    private void AssertSame(List<SampledToken> expected, List<SampledToken> actual, string what)
    {
        Assert.Equal(expected.Select(t => t.TokenId), actual.Select(t => t.TokenId));
        double worst = expected.Zip(actual).Max(p => Math.Abs(p.First.Logprob - p.Second.Logprob));
        output.WriteLine($"{what}: largest logprob difference {worst:E2}");
        Assert.True(worst < LogprobTolerance, $"{what}: logprobs differ by {worst:E2}");
    }

    /// <summary>Also with bfloat16 and float16 experts (Model:ExpertDtype), whose products must not depend on how many rows an expert gets.</summary>
    [Theory]
    [InlineData(torch.ScalarType.Float32)]
    [InlineData(torch.ScalarType.BFloat16)]
    [InlineData(torch.ScalarType.Float16)]
    public async Task Greedy_output_is_the_same_alone_and_batched_with_15_others(torch.ScalarType expertDtype)
    {
        var prompts = Enumerable.Range(0, 16).Select(i => Prompt(i, 8 + 5 * i)).ToList();
        var alone = await RunAll(new EngineOptions(), [prompts[0]], 24, expertDtype);
        var batched = await RunAll(new EngineOptions(), prompts, 24, expertDtype);
        AssertSame(alone[0], batched[0], $"{expertDtype} experts, alone vs batched with 15");
        // And the last of the batch against its own solo run.
        var aloneLast = await RunAll(new EngineOptions(), [prompts[15]], 24, expertDtype);
        AssertSame(aloneLast[0], batched[15], $"{expertDtype} experts, last prompt alone vs batched");
    }

    /// <summary>Two step threads cut each step in two; two engine loops each run their own steps; or both.</summary>
    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    public async Task Parallel_engines_give_every_sequence_the_output_of_one_thread(int loops, int stepThreads)
    {
        var prompts = Enumerable.Range(0, 16).Select(i => Prompt(100 + i, 8 + 5 * i)).ToList();
        var one = await RunAll(new EngineOptions(), prompts, 24);
        var parallel = await RunAll(new EngineOptions { Loops = loops, StepThreads = stepThreads }, prompts, 24);
        for (int i = 0; i < prompts.Count; i++) AssertSame(one[i], parallel[i], $"prompt {i}, one thread vs {loops} loop(s) of {stepThreads} step thread(s)");
    }

    [Fact]
    public async Task Requests_are_spread_over_the_engine_loops()
    {
        using var model = MoeForCausalLM.Load(Dir, torch.ScalarType.Float32, torch.CPU);
        var tokenizer = ModelTokenizer.Load(Dir, model.Config);
        // One running slot per loop: two sequences run at once only if the second request went to the other loop.
        // The engine's own reports (after every step and queue change) give the count; polling it from the test
        // could miss the whole run when the test host's threads wait for a core.
        var observer = new MostRunningObserver();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { Loops = 2, MaxRunningSequences = 2 }, observer);
        var runs = Enumerable.Range(0, 4)
            .Select(i => Collect(engine.Submit(new GenerationRequest
            {
                PromptIds = Prompt(300 + i, 16), Sampling = new SamplingParameters { Temperature = 0 }, MaxTokens = 48, IgnoreEos = true,
            }, CancellationToken.None))).ToList();
        var outputs = await Task.WhenAll(runs);
        output.WriteLine($"most sequences running at once: {observer.Most}");
        Assert.All(outputs, o => Assert.Equal(48, o.Count));
        Assert.Equal(2, observer.Most);
        Assert.Equal(0, engine.Running);
    }

    [Theory]
    [InlineData(4, 600, 64, "Engine:Loops")]      // 150 tokens per loop cannot hold one 256-token context
    [InlineData(2, 65536, 1, "Engine:MaxRunningSequences")]
    public void Loops_that_cannot_each_serve_a_sequence_are_refused_at_start(int loops, int kvTokens, int maxRunning, string key)
    {
        using var model = MoeForCausalLM.Load(Dir, torch.ScalarType.Float32, torch.CPU);
        var tokenizer = ModelTokenizer.Load(Dir, model.Config);
        var e = Assert.Throws<ArgumentException>(() => new InferenceEngine(model, tokenizer,
            new EngineOptions { Loops = loops, KvCacheTokens = kvTokens, MaxRunningSequences = maxRunning }, NullEngineObserver.Instance));
        output.WriteLine(e.Message);
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public async Task Preemption_and_recompute_do_not_change_the_output()
    {
        var prompts = Enumerable.Range(0, 8).Select(i => Prompt(100 + i, 40)).ToList();
        var roomy = await RunAll(new EngineOptions(), prompts, 40);
        output.WriteLine($"generated lengths: {string.Join(", ", roomy.Select(r => r.Count))}");
        // 17 blocks of 16 tokens (the least that holds one full 256-token context) for 8 growing sequences.
        var (tight, preemptions) = await RunAllCounting(new EngineOptions { KvCacheTokens = 272, KvBlockSize = 16, MaxBatchedTokens = 64 }, prompts, 40);
        output.WriteLine($"preemptions: {preemptions}");
        Assert.True(preemptions > 0, "the tight cache should have forced preemptions");
        for (int i = 0; i < prompts.Count; i++) AssertSame(roomy[i], tight[i], $"prompt {i} roomy vs tight cache");
    }

    [Fact]
    public void A_cache_smaller_than_one_full_context_is_refused_at_start()
    {
        using var model = MoeForCausalLM.Load(Dir, torch.ScalarType.Float32, torch.CPU);
        var tokenizer = ModelTokenizer.Load(Dir, model.Config);
        var e = Assert.Throws<ArgumentException>(() => new InferenceEngine(model, tokenizer, new EngineOptions { KvCacheTokens = 64 }, NullEngineObserver.Instance));
        Assert.Contains("Engine:KvCacheTokens", e.Message);
    }

    /// <summary>The most sequences running at once over all loops, as the engine reports them (one report at a time).</summary>
    private sealed class MostRunningObserver : IEngineObserver
    {
        public int Most { get; private set; }
        public void OnStep(StepStats step) => Most = Math.Max(Most, step.Running);
        public void OnQueueChanged(int running, int waiting) => Most = Math.Max(Most, running);
        public void OnFirstToken(string policy, double secondsSinceQueued) { }
        public void OnNextToken(double secondsSincePrevious) { }
        public void OnSequenceFinished(SequenceStats stats) { }
    }
}

public class BlockAllocatorTests
{
    [Fact]
    public void Covers_tokens_with_whole_blocks_and_never_hands_out_block_zero()
    {
        var a = new BlockAllocator(blocks: 5, blockSize: 4); // blocks 1..4 usable
        var held = new List<int>();
        Assert.True(a.TryCover(held, 9));       // 3 blocks
        Assert.Equal(3, held.Count);
        Assert.DoesNotContain(0, held);
        Assert.False(a.TryCover(held, 17));     // would need 5
        Assert.Equal(3, held.Count);            // unchanged on failure
        Assert.True(a.TryCover(held, 16));
        Assert.Equal(0, a.FreeBlocks);
        a.Free(held);
        Assert.Empty(held);
        Assert.Equal(4, a.FreeBlocks);
    }
}
