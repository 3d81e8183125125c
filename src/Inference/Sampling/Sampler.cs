using System.Buffers;
using System.Numerics.Tensors;

namespace MoeServe.Inference.Sampling;

/// <summary>
/// Chooses the next token of one sequence from its logits row. Reported logprobs are those of the
/// model's own distribution (log-softmax of the raw logits), as vLLM reports them; penalties,
/// temperature, top-k and top-p shape only the choice.
/// </summary>
public sealed class Sampler(SamplingParameters parameters)
{
    // A seeded generator per sequence makes a request with `seed` reproducible whatever else is batched with it.
    private readonly Random _random = parameters.Seed is long seed ? new Random(unchecked((int)(seed ^ (seed >> 32)))) : new Random();
    private readonly Dictionary<int, int> _generatedCounts = [];

    public SamplingParameters Parameters => parameters;

    /// <param name="logits">[V] float32 next-token logits.</param>
    public SampledToken Sample(ReadOnlySpan<float> logits)
    {
        // A logprob is logit - logZ, so the chosen and the top tokens need logZ only, not a [V] array per token
        // (16 KiB a token for the shipped model, most of the engine's garbage at 2,000 tokens/s).
        float logZ = LogPartition(logits);
        int chosen = parameters.IsGreedy && parameters.PresencePenalty == 0 && parameters.FrequencyPenalty == 0
            ? ArgMax(logits)
            : Choose(logits);
        _generatedCounts[chosen] = _generatedCounts.GetValueOrDefault(chosen) + 1;
        return new SampledToken(chosen, logits[chosen] - logZ, TopLogprobs(logits, logZ, parameters.TopLogprobs));
    }

    private int Choose(ReadOnlySpan<float> raw)
    {
        var logits = raw.ToArray();
        foreach (var (token, count) in _generatedCounts)
            logits[token] -= (float)(parameters.FrequencyPenalty * count + parameters.PresencePenalty);
        if (parameters.IsGreedy) return ArgMax(logits);

        // Candidates sorted by logit (ties: lower id first); top-k then top-p cut the list.
        var order = Enumerable.Range(0, logits.Length).ToArray();
        Array.Sort(order, (a, b) => logits[b] != logits[a] ? logits[b].CompareTo(logits[a]) : a.CompareTo(b));
        int keep = parameters.TopK > 0 ? Math.Min(parameters.TopK, order.Length) : order.Length;
        double max = logits[order[0]] / parameters.Temperature;
        var probs = new double[keep];
        double total = 0;
        for (int i = 0; i < keep; i++) total += probs[i] = Math.Exp(logits[order[i]] / parameters.Temperature - max);
        if (parameters.TopP < 1.0)
        {
            double cumulative = 0;
            for (int i = 0; i < keep; i++)
            {
                cumulative += probs[i] / total;
                if (cumulative >= parameters.TopP) { keep = i + 1; break; }
            }
            total = probs.Take(keep).Sum();
        }
        double u = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            u -= probs[i];
            if (u <= 0) return order[i];
        }
        return order[keep - 1];
    }

    /// <summary>Index of the largest value; ties go to the lower index.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <param name="logits">[V] float32.</param>
    /// <returns>[V] log-softmax in float32 (as libtorch computes it), with vectorised max, exp and sum.</returns>
    public static float[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        var result = new float[logits.Length];
        TensorPrimitives.Subtract(logits, LogPartition(logits), result);
        return result;
    }

    /// <param name="logits">[V] float32.</param>
    /// <returns>log sum exp of the logits, float32: max + log(sum(exp(logits - max))).</returns>
    public static float LogPartition(ReadOnlySpan<float> logits)
    {
        float max = TensorPrimitives.Max(logits);
        var scratch = ArrayPool<float>.Shared.Rent(logits.Length);
        try
        {
            var shifted = scratch.AsSpan(0, logits.Length);
            TensorPrimitives.Subtract(logits, max, shifted);
            TensorPrimitives.Exp(shifted, shifted);
            return max + MathF.Log(TensorPrimitives.Sum(shifted));
        }
        finally { ArrayPool<float>.Shared.Return(scratch); }
    }

    /// <summary>The <paramref name="count"/> most likely tokens by logit, each with logit - <paramref name="logZ"/>
    /// (the same float32 subtraction <see cref="LogSoftmax"/> makes), most likely first (ties: lower id).</summary>
    /// <param name="logits">[V] float32.</param>
    public static IReadOnlyList<TokenLogprob> TopLogprobs(ReadOnlySpan<float> logits, float logZ, int count)
    {
        if (count <= 0) return [];
        var best = new List<TokenLogprob>(count + 1);
        for (int i = 0; i < logits.Length; i++)
        {
            float logprob = logits[i] - logZ;
            if (best.Count == count && logprob <= best[^1].Logprob) continue;
            int at = best.Count;
            while (at > 0 && best[at - 1].Logprob < logprob) at--;
            best.Insert(at, new TokenLogprob(i, logprob));
            if (best.Count > count) best.RemoveAt(count);
        }
        return best;
    }
}
