namespace MoeServe.Cli.Eval;

/// <summary>
/// The context-free baseline: p(token) = (count + 1) / (total + V), token frequencies counted on the
/// training text with add-one (Laplace) smoothing over the model's whole vocabulary V, so a token never
/// seen in training still has a finite cost. A model that beats it has learned something beyond frequencies.
/// </summary>
public sealed class UnigramModel(int vocab)
{
    private readonly long[] _counts = new long[vocab];

    public int Vocab => vocab;
    public long TotalTokens { get; private set; }

    /// <summary>Number of vocabulary entries seen at least once.</summary>
    public int DistinctTokens => _counts.Count(c => c > 0);

    public void Add(ReadOnlySpan<int> tokens)
    {
        foreach (int t in tokens) _counts[t]++;
        TotalTokens += tokens.Length;
    }

    /// <summary>-log p(token), nats.</summary>
    public double Nll(int token) => -Math.Log((_counts[token] + 1.0) / (TotalTokens + (double)vocab));

    /// <summary>Sum of <see cref="Nll"/> over <paramref name="tokens"/>.</summary>
    public double Sum(ReadOnlySpan<int> tokens)
    {
        double total = 0;
        foreach (int t in tokens) total += Nll(t);
        return total;
    }
}
