using MoeServe.Cli.Eval;
using MoeServe.Inference.Model;
using MoeServe.Inference.Parallel;
using MoeServe.Inference.Tokenization;
using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>Expert placement and multi-device execution: every placement gives the single-device outputs.</summary>
public class ExpertParallelTests
{
    private static string TrainedModel => Path.Combine(RepositoryPaths.Root, "models", "moeserve-moe-tiny");

    // Three domains in one batch, as the engine would mix requests.
    private static readonly string[] MixedTexts =
    [
        "And God said, Let there be light: and there was light. And God saw the light, that it was good.",
        "<|im_start|>user\nWhat is 35 + 64?<|im_end|>\n<|im_start|>assistant\n99<|im_end|>\n",
        "<|im_start|>user\nSort these numbers: 98, 34, 94, 36<|im_end|>\n<|im_start|>assistant\n34, 36, 94, 98<|im_end|>\n",
    ];

    [Fact]
    public void Contiguous_placement_gives_each_device_a_block_of_experts()
    {
        Assert.Equal([0, 0, 1, 1, 2, 2, 3, 3], ExpertPlacement.Contiguous(2, 8, 4).Layer(1));
        Assert.Equal([0, 0, 1, 1, 2, 3], ExpertPlacement.Contiguous(1, 6, 4).Layer(0)); // 6 over 4: the first two hold one more
        Assert.Equal(new int[8], ExpertPlacement.Single(3, 8).Layer(2));
        Assert.Throws<ArgumentException>(() => ExpertPlacement.Contiguous(1, 8, 9));
    }

    [Fact]
    public void Explicit_placement_rejects_maps_that_do_not_fit()
    {
        var ok = ExpertPlacement.Explicit([[1, 0, 1, 0]], 4, 2);
        Assert.Equal([1, 0, 1, 0], ok.Layer(0));
        Assert.Contains("4 experts", Assert.Throws<ArgumentException>(() => ExpertPlacement.Explicit([[0, 1, 0]], 4, 2)).Message);
        Assert.Contains("device 2 is outside", Assert.Throws<ArgumentException>(() => ExpertPlacement.Explicit([[0, 1, 2, 0]], 4, 2)).Message);
        Assert.Contains("device 1 holds no expert", Assert.Throws<ArgumentException>(() => ExpertPlacement.Explicit([[0, 0, 0, 0]], 4, 2)).Message);
    }

    [Fact]
    public void Load_aware_placement_spreads_hot_experts_and_keeps_experts_per_device()
    {
        long[][] loads = [[100, 90, 10, 12, 11, 9, 5, 3], [1, 1, 1, 1, 1, 1, 50, 60]];
        var placement = ExpertPlacement.LoadAware(loads, 8, 4);
        var contiguous = ExpertPlacement.Contiguous(2, 8, 4);
        for (int l = 0; l < loads.Length; l++)
        {
            var map = placement.Layer(l);
            Assert.All(Enumerable.Range(0, 4), d => Assert.Equal(2, map.Count(x => x == d))); // memory per device unchanged
            var hottest = Enumerable.Range(0, 8).OrderByDescending(e => loads[l][e]).Take(2).ToArray();
            Assert.NotEqual(map[hottest[0]], map[hottest[1]]);
            Assert.True(placement.DeviceLoads(l, loads[l]).Max() < contiguous.DeviceLoads(l, loads[l]).Max());
        }
        // Layer 0: 100 | 90 | 12 + 3 ... the busiest device carries just the hottest expert plus the lightest one.
        Assert.Equal(103, placement.DeviceLoads(0, loads[0]).Max());
        Assert.Equal(placement.DeviceOf, ExpertPlacement.LoadAware(loads, 8, 4).DeviceOf); // deterministic
    }

    [Fact]
    public void Redundant_replicas_go_to_the_hottest_experts_on_different_devices()
    {
        long[][] loads = [[400, 90, 10, 12, 11, 9, 5, 3]];
        var placement = ExpertPlacement.LoadAware(loads, 8, 4, redundantExperts: 4);
        var replicas = placement.Replicas[0];
        // The hottest expert (400) takes an extra replica three times (shares 200, 133, 100 still lead 90) and then
        // has one on every device, so the fourth goes to the next hottest (90).
        Assert.Equal(4, replicas[0].Length);
        Assert.Equal(4, replicas[0].Distinct().Count());
        Assert.Equal(2, replicas[1].Length);
        Assert.NotEqual(replicas[1][0], replicas[1][1]);
        Assert.Equal(12, replicas.Sum(r => r.Length));
        Assert.All(Enumerable.Range(0, 4), d => Assert.Equal(3, replicas.Count(r => r.Contains(d)))); // 12 replicas, 3 per device
        var split = placement.DeviceLoads(0, loads[0]);
        Assert.Equal(loads[0].Sum(), split.Sum());
        Assert.True(split.Max() < ExpertPlacement.LoadAware(loads, 8, 4).DeviceLoads(0, loads[0]).Max());
        Assert.Equal((0, 34), ExpertPlacement.Share(100, 0, 3)); // 100 rows over 3 replicas: 34, 33, 33 (offset, count)
        Assert.Equal((67, 33), ExpertPlacement.Share(100, 2, 3));
        Assert.Throws<ArgumentException>(() => ExpertPlacement.LoadAware(loads, 8, 4, redundantExperts: 25));
    }

    public static TheoryData<int, string, bool> Plans()
    {
        var data = new TheoryData<int, string, bool>();
        foreach (int devices in new[] { 2, 4, 8 })
            foreach (string mode in new[] { "contiguous", "explicit", "load_aware", "load_aware_replicated" })
                data.Add(devices, mode, devices != 4); // 4 devices run in turn, the others at once
        return data;
    }

    [Theory]
    [MemberData(nameof(Plans))]
    public void Every_placement_gives_the_single_device_outputs(int devices, string mode, bool concurrent)
    {
        using var inference = torch.inference_mode();
        using var single = MoeForCausalLM.Load(TrainedModel, ScalarType.Float32, CPU);
        var tokenizer = ModelTokenizer.Load(TrainedModel, single.Config);
        var docs = MixedTexts.Select(t => tokenizer.Encode(t, addBos: false)).ToList();
        int layers = single.Config.NumLayers, experts = single.Config.NumExperts;

        using var singleScorer = new DocumentScorer(single, 512, 4);
        var reference = singleScorer.Score(docs, RoutingPolicy.Vanilla);
        var referenceDrop = singleScorer.Score(docs, RoutingPolicy.TokenDrop, 1.0);
        var placement = mode switch
        {
            "explicit" => ExpertPlacement.Explicit(Enumerable.Range(0, layers).Select(l => Enumerable.Range(0, experts).Select(e => (3 * e + l) % devices).ToArray()).ToArray(), experts, devices),
            "load_aware" => ExpertPlacement.LoadAware(reference.ExpertLoads, experts, devices),
            "load_aware_replicated" => ExpertPlacement.LoadAware(reference.ExpertLoads, experts, devices, redundantExperts: devices),
            _ => ExpertPlacement.Contiguous(layers, experts, devices),
        };

        using var parallel = MoeForCausalLM.Load(TrainedModel, ScalarType.Float32, CPU, _ => ExpertParallelPlan.Virtual(devices, placement, concurrent));
        using var scorer = new DocumentScorer(parallel, 512, 4);
        var (vanilla, vanillaStats) = ScoreWithStats(scorer, docs, RoutingPolicy.Vanilla);
        var drop = scorer.Score(docs, RoutingPolicy.TokenDrop, 1.0);

        for (int d = 0; d < docs.Count; d++)
        {
            Assert.Equal(reference.NllSums[d], vanilla.NllSums[d], 1e-4);
            Assert.Equal(reference.Argmax[d], vanilla.Argmax[d]);
            Assert.Equal(referenceDrop.NllSums[d], drop.NllSums[d], 1e-4);
        }
        Assert.Equal(reference.ExpertLoads, vanilla.ExpertLoads);
        Assert.Equal(referenceDrop.DroppedPairs, drop.DroppedPairs);
        // Each device executed exactly the pairs of the experts placed on it.
        for (int l = 0; l < layers; l++)
        {
            Assert.Equal(placement.DeviceLoads(l, vanillaStats.ExpertLoads[l]), vanillaStats.DevicePairs[l]);
            Assert.All(Enumerable.Range(0, devices), d => Assert.True(vanillaStats.DevicePairs[l][d] == 0 || vanillaStats.DeviceSeconds[l][d] > 0));
            Assert.True(vanillaStats.ExpertWallSeconds[l] > 0);
        }
    }

    [Fact]
    public void Logits_of_four_concurrent_devices_equal_one_device_to_fp32_rounding()
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var (a, b) = LogitsAlongsideOneDevice(c => ExpertParallelPlan.Virtual(4, ExpertPlacement.Contiguous(c.NumLayers, c.NumExperts, 4)), MixedTexts[0]);
        double diff = (a - b).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"largest |logit difference| {diff}");
    }

    [Theory]
    [InlineData(2, ScalarType.Float32)]
    [InlineData(3, ScalarType.Float32)]
    [InlineData(2, ScalarType.Float16)] // FBGEMM-packed experts
    [InlineData(3, ScalarType.Float16)]
    public void Experts_shared_among_threads_give_the_one_thread_output_to_the_bit(int threadCount, ScalarType weightDtype)
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var generator = new Generator(7);
        // The shipped model's expert shape (past the grouped product's size limit), uneven loads, one idle expert.
        long h = 256, f = 512;
        long[] counts = [9, 0, 4, 1, 7, 3, 2, 6];
        var gateUp = counts.Select(_ => torch.randn([2 * f, h], generator: generator).to(weightDtype)).ToList();
        var down = counts.Select(_ => torch.randn([h, f], generator: generator).to(weightDtype)).ToList();
        using var bank = new ExpertBank(gateUp, down);
        var inputs = torch.randn([counts.Sum(), h], generator: generator);
        using var threads = new WorkerThreads(threadCount, "test-experts");
        Assert.True(ExpertBank.SharesAmongThreads(counts, threads));
        var alone = bank.Run(inputs, counts);
        var shared = bank.Run(inputs, counts, threads);
        Assert.True(alone.equal(shared).all().item<bool>(), $"largest difference {(alone - shared).abs().max().item<float>()}");
        // A second call reuses the same threads.
        Assert.True(alone.equal(bank.Run(inputs, counts, threads)).all().item<bool>());
    }

    [Fact]
    public void Logits_with_two_threads_per_device_equal_one_thread_to_the_bit()
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var (a, b) = LogitsAlongsideOneDevice(c => ExpertParallelPlan.Single(CPU, c.NumLayers, c.NumExperts) with { ThreadsPerDevice = 2 }, MixedTexts[2]);
        Assert.True(a.equal(b).all().item<bool>(), $"largest |logit difference| {(a - b).abs().max().item<float>()}");
    }

    [Fact]
    public void A_failing_device_job_surfaces_on_the_caller_and_the_workers_keep_working()
    {
        using var workers = new WorkerThreads(4);
        var threads = new int[4];
        Action Job(int d) => () => threads[d] = Environment.CurrentManagedThreadId;
        var failure = Assert.Throws<InvalidOperationException>(() =>
            workers.RunAll([Job(0), () => throw new InvalidOperationException("device 1 failed"), Job(2), null]));
        Assert.Equal("device 1 failed", failure.Message);
        workers.RunAll([Job(0), Job(1), Job(2), Job(3)]);
        Assert.Equal(4, threads.Distinct().Count()); // one thread per device
        Assert.Equal(Environment.CurrentManagedThreadId, threads[0]); // device 0 runs on the caller
    }

    [Fact]
    public void Devices_run_at_the_same_time()
    {
        using var workers = new WorkerThreads(3);
        // Each job waits until all three have started: run one after another, none would ever pass.
        using var barrier = new Barrier(3);
        var passed = new bool[3];
        Action Job(int d) => () => passed[d] = barrier.SignalAndWait(TimeSpan.FromSeconds(10));
        workers.RunAll([Job(0), Job(1), Job(2)]);
        Assert.All(passed, Assert.True);
    }

    private static (BatchScore Score, StepRoutingStats Stats) ScoreWithStats(DocumentScorer scorer, List<int[]> docs, RoutingPolicy policy)
    {
        var score = scorer.Score(docs, policy);
        return (score, scorer.LastRoutingStats!);
    }

    /// <summary>Logits of <paramref name="text"/> from the plain single-device model and from one loaded with <paramref name="plan"/>.</summary>
    /// <returns>[n, V] float32 each, in the caller's dispose scope.</returns>
    private static (Tensor Single, Tensor Planned) LogitsAlongsideOneDevice(Func<MoeServe.Inference.Checkpoint.ModelConfig, ExpertParallelPlan> plan, string text)
    {
        using var single = MoeForCausalLM.Load(TrainedModel, ScalarType.Float32, CPU);
        using var planned = MoeForCausalLM.Load(TrainedModel, ScalarType.Float32, CPU, plan);
        var ids = ModelTokenizer.Load(TrainedModel, single.Config).Encode(text, addBos: false);
        return (Logits(single, ids), Logits(planned, ids));
    }

    /// <returns>[n, V] float32 logits of every position of one sequence.</returns>
    private static Tensor Logits(MoeForCausalLM model, int[] ids)
    {
        int blocks = (ids.Length + 15) / 16;
        using var cache = model.NewCache(1 + blocks, 16);
        return model.Forward(new ForwardBatch
        {
            TokenIds = ids.Select(t => (long)t).ToArray(),
            Sequences = [new SequenceSlice(0, ids.Length, 0, cache.Slots(Enumerable.Range(1, blocks).ToList(), ids.Length))],
            LogitRows = Enumerable.Range(0, ids.Length).Select(r => (long)r).ToArray(),
            Cache = cache,
        });
    }
}
