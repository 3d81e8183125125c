using System.Diagnostics;
using MoeServe.Cli.Bench;
using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Cli.Compare;

/// <summary>What the timed probabilities looked like, so a reader can judge how typical they are.</summary>
/// <param name="MeanTopKMass">Mean over tokens of the sum of the top-k probabilities.</param>
/// <param name="ShareBelowEpsHigh">Tokens whose top-k mass is below 0.9, the ones LASER reroutes.</param>
public sealed record TimedInput(int Tokens, bool DecodeOnly, double MeanTopKMass, double ShareBelowEpsHigh);

/// <summary>
/// Times <see cref="LayerRouter.Route"/> on its own, away from the experts' matrix products that hide it in
/// a forward pass: the routing cost per layer and step each policy adds. The inputs are synthetic [T, E]
/// fp32 probabilities, seeded so every configuration routes the very same ones: softmax of N(0, 1) logits
/// plus a per-expert bias N(0, 0.5^2): a router with favourite experts (what capacity acts on) whose top-k
/// mass is mostly below LASER's eps_high 0.9 (so its pool path is exercised); the report prints that mass.
/// The median of many calls, after a warm-up, discards the scheduler's outliers on a shared CPU.
/// </summary>
public sealed class RoutingTimer : IDisposable
{
    public const int DecodeTokens = 16;
    public const int PrefillTokens = 512;
    private const int Seed = 20240611;
    private const int Warmup = 20;

    private readonly GateSemantics _gate;
    private readonly int _calls;
    private readonly Tensor _decode;
    private readonly Tensor _prefill;

    /// <param name="calls">Timed calls per configuration and batch size.</param>
    public RoutingTimer(GateSemantics gate, int calls)
    {
        _gate = gate;
        _calls = calls;
        _decode = Probabilities(DecodeTokens, gate.NumExperts, Seed);
        _prefill = Probabilities(PrefillTokens, gate.NumExperts, Seed + 1);
    }

    public int Calls => _calls;

    /// <summary>The two inputs, described.</summary>
    public IReadOnlyList<TimedInput> Inputs =>
        [Describe(_decode, DecodeTokens, decodeOnly: true), Describe(_prefill, PrefillTokens, decodeOnly: false)];

    public RoutingTiming Measure(CompareConfiguration configuration) =>
        new(MedianMicros(configuration, _decode, decodeOnly: true), MedianMicros(configuration, _prefill, decodeOnly: false));

    private double MedianMicros(CompareConfiguration c, Tensor probs, bool decodeOnly)
    {
        using var inference = torch.inference_mode();
        int t = (int)probs.shape[0];
        // Built once per step in the server (ModelRunner), outside the per-layer cost, so outside the timing too.
        var batch = BatchRouting.All(t, c.Policy, c.CapacityFactor, c.Routing, decodeOnly);
        var samples = new List<double>(_calls);
        for (int i = 0; i < Warmup + _calls; i++)
        {
            // The MoE block routes inside its own dispose scope; freeing the temporaries is not routing work.
            using var scope = NewDisposeScope();
            long start = Stopwatch.GetTimestamp();
            using var result = LayerRouter.Route(probs, _gate, batch, layer: 0);
            double micros = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            if (i >= Warmup) samples.Add(micros);
        }
        return Statistics.Median(samples);
    }

    /// <summary>[T, E] fp32 softmax probabilities, deterministic for a seed (System.Random, not libtorch's generator).</summary>
    internal static Tensor Probabilities(int tokens, int experts, int seed)
    {
        var random = new Random(seed);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        var bias = Enumerable.Range(0, experts).Select(_ => 0.5 * Normal()).ToArray();
        var logits = new float[tokens * experts];
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)(Normal() + bias[i % experts]);
        using var raw = torch.tensor(logits, [tokens, experts]);
        return raw.softmax(1);
    }

    private TimedInput Describe(Tensor probs, int tokens, bool decodeOnly)
    {
        using var scope = NewDisposeScope();
        var mass = probs.sort(1, descending: true).Values.narrow(1, 0, _gate.TopK).sum(1); // [T]
        return new TimedInput(tokens, decodeOnly, mass.mean().item<float>(), mass.lt(0.9).to(ScalarType.Float32).mean().item<float>());
    }

    public void Dispose()
    {
        _decode.Dispose();
        _prefill.Dispose();
    }
}
