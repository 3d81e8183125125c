using System.Diagnostics;
using MoeServe.Inference.Model;
using MoeServe.Routing;
using static TorchSharp.torch;

namespace MoeServe.Cli.Bench;

/// <summary>
/// Measures prefill and greedy decode of one loaded model the way the engine drives it: one
/// <see cref="MoeForCausalLM.Forward"/> per step over a flat batch, a fresh KV cache per sequence.
/// Must run on a thread that is in inference mode.
/// </summary>
/// <param name="policy">Every token's routing policy, capacity factor 1.0, as a request with that policy would get.</param>
public sealed class BenchRunner(MoeForCausalLM model, BenchSettings settings, RoutingPolicy policy = RoutingPolicy.Vanilla)
{
    /// <summary>Timings and memory of one prefill followed by its decode steps.</summary>
    private sealed record Pass(double PrefillSeconds, double[] StepSeconds, double[] RoutingSeconds, long PrefillRssDelta, long DecodeRssDelta);

    private readonly RoutingConfig _routing = RoutingConfig.Default with { ApplyToDecode = settings.ApplyToDecode };

    /// <summary>One warm-up pass, then <see cref="BenchSettings.Repeats"/> measured passes of <paramref name="batch"/> sequences.</summary>
    public BenchRow Run(int batch, double loadSeconds)
    {
        // Warm-up: libtorch picks kernels and the allocator grows its pools on the first calls of each shape.
        RunPass(batch, settings.WarmupDecodeTokens);
        ProcessMemory.BeginWindow();
        var contention = new CpuContention();
        var passes = new List<Pass>();
        for (int r = 0; r < settings.Repeats; r++) passes.Add(RunPass(batch, settings.DecodeTokens));
        long peak = ProcessMemory.WindowPeak();
        double? others = contention.OthersPercent();

        int p = settings.PromptTokens, d = settings.DecodeTokens;
        var steps = passes.SelectMany(x => x.StepSeconds).ToArray();
        var config = model.Config;
        long kvBytes = (long)batch * (p + d) * config.NumLayers * 2 * config.NumKvHeads * config.HeadDim
                       * BenchSettings.ElementSize(model.ComputeDtype);
        return new BenchRow(
            model.ComputeDtype, batch, p, d,
            PrefillTokensPerSecond: Statistics.Median(passes.Select(x => batch * p / x.PrefillSeconds).ToArray()),
            DecodeTokensPerSecond: Statistics.Median(passes.Select(x => batch * d / x.StepSeconds.Sum()).ToArray()),
            DecodeStepP50Ms: Statistics.Percentile(steps, 50) * 1e3,
            DecodeStepP99Ms: Statistics.Percentile(steps, 99) * 1e3,
            PeakRssBytes: peak,
            PrefillRssDeltaBytes: passes.Max(x => x.PrefillRssDelta),
            DecodeRssDeltaBytes: passes.Max(x => x.DecodeRssDelta),
            KvCacheBytes: kvBytes,
            LoadSeconds: loadSeconds,
            OtherProcessesCpuPercent: others)
        {
            Policy = policy,
            ExpertDtype = model.ExpertDtype,
            DecodeRoutingP50Ms = Statistics.Percentile(passes.SelectMany(x => x.RoutingSeconds).ToArray(), 50) * 1e3,
        };
    }

    /// <summary>Prefills <paramref name="batch"/> prompts in one flat batch, then decodes <paramref name="decodeSteps"/> tokens each.</summary>
    private Pass RunPass(int batch, int decodeSteps)
    {
        const int blockSize = 16;
        int p = settings.PromptTokens;
        // Each sequence owns a contiguous run of blocks of the paged cache (block 0 is the reserved padding block).
        int blocksPerSequence = (p + decodeSteps + blockSize - 1) / blockSize;
        using var cache = model.NewCache(1 + batch * blocksPerSequence, blockSize);
        var blocks = Enumerable.Range(0, batch).Select(b => Enumerable.Range(1 + b * blocksPerSequence, blocksPerSequence).ToList()).ToArray();

        // Prefill: T = batch * P rows, one logits row per sequence (its last prompt token).
        var tokens = new long[batch * p];
        var slices = new SequenceSlice[batch];
        var lastRows = new long[batch];
        for (int b = 0; b < batch; b++)
        {
            Prompt(b).CopyTo(tokens, b * p);
            slices[b] = new SequenceSlice(b * p, p, 0, cache.Slots(blocks[b], p));
            lastRows[b] = b * p + p - 1;
        }
        var (prefillSeconds, _, next, prefillDelta) = Step(tokens, slices, lastRows, cache, decodeOnly: false);

        // Decode: T = batch rows, one new token per sequence, every row needs logits.
        var allRows = Enumerable.Range(0, batch).Select(b => (long)b).ToArray();
        var stepSeconds = new double[decodeSteps];
        var routingSeconds = new double[decodeSteps];
        long decodeDelta = 0;
        for (int s = 0; s < decodeSteps; s++)
        {
            int past = p + s;
            var decodeSlices = Enumerable.Range(0, batch).Select(b => new SequenceSlice(b, 1, past, cache.Slots(blocks[b], past + 1))).ToArray();
            (stepSeconds[s], routingSeconds[s], next, long delta) = Step(next, decodeSlices, allRows, cache, decodeOnly: true);
            decodeDelta = Math.Max(decodeDelta, delta);
        }
        return new Pass(prefillSeconds, stepSeconds, routingSeconds, prefillDelta, decodeDelta);
    }

    /// <summary>One timed forward pass plus greedy selection (what an engine step costs before detokenising).</summary>
    /// <returns>Seconds, the routing policy's seconds within them (all layers), the argmax token of each logits row ([R]),
    /// and how far RSS rose above its level before the step.</returns>
    private (double Seconds, double RoutingSeconds, long[] Next, long RssDelta) Step(long[] tokens, SequenceSlice[] slices, long[] logitRows,
        PagedKvCache cache, bool decodeOnly)
    {
        long rssBefore = ProcessMemory.CurrentRss();
        ProcessMemory.ResetPeak();
        long start = Stopwatch.GetTimestamp();
        long[] next;
        // Built per step as the engine's model runner does (outside the layers' routing time).
        var batch = new ForwardBatch
        {
            TokenIds = tokens, Sequences = slices, LogitRows = logitRows, Cache = cache,
            Routing = BatchRouting.All(tokens.Length, policy, 1.0, _routing, decodeOnly, model.ExpertParallel.Placement),
        };
        using (var scope = NewDisposeScope())
        {
            var logits = model.Forward(batch); // [R, V]
            next = Argmax(logits.data<float>().ToArray(), (int)logits.shape[1]);
        }
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return (seconds, batch.RoutingStats!.RoutingSeconds.Sum(), next, ProcessMemory.PeakRss() - rssBefore);
    }

    /// <param name="logits">[R, V] float32, row-major.</param>
    /// <returns>[R] index of each row's largest logit.</returns>
    private static long[] Argmax(float[] logits, int vocab)
    {
        var result = new long[logits.Length / vocab];
        for (int r = 0; r < result.Length; r++) result[r] = MoeServe.Inference.Sampling.Sampler.ArgMax(logits.AsSpan(r * vocab, vocab));
        return result;
    }

    /// <summary>Sequence <paramref name="index"/>'s prompt: P token ids, pseudo-random but identical on every run.</summary>
    private long[] Prompt(int index)
    {
        var random = new Random(settings.Seed + index);
        return Enumerable.Range(0, settings.PromptTokens).Select(_ => (long)random.Next(model.Config.VocabSize)).ToArray();
    }
}
