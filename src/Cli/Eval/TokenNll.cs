namespace MoeServe.Cli.Eval;

/// <summary>
/// Negative log-likelihood of target tokens under logits rows: -log softmax(row)[target], computed in
/// double with the log-sum-exp shift so that large logits neither overflow nor lose the small terms.
/// </summary>
public static class TokenNll
{
    /// <param name="logits">[R, V] float32 logits, row-major.</param>
    /// <param name="vocab">V.</param>
    /// <param name="row">Which row r (0..R-1).</param>
    /// <param name="target">The token id whose probability row r is asked for.</param>
    /// <returns>-log p(target | row), in nats.</returns>
    public static double Of(ReadOnlySpan<float> logits, int vocab, int row, int target)
    {
        var x = logits.Slice(row * vocab, vocab);
        float max = float.NegativeInfinity;
        foreach (var v in x) if (v > max) max = v;
        double sum = 0;
        foreach (var v in x) sum += Math.Exp(v - (double)max);
        return max + Math.Log(sum) - x[target];
    }

    /// <summary>Sum of <see cref="Of"/> over rows first..first+targets.Length-1, row first + i predicting targets[i].</summary>
    /// <param name="logits">[R, V] float32 logits, row-major.</param>
    public static double Sum(ReadOnlySpan<float> logits, int vocab, int firstRow, ReadOnlySpan<int> targets)
    {
        double total = 0;
        for (int i = 0; i < targets.Length; i++) total += Of(logits, vocab, firstRow + i, targets[i]);
        return total;
    }
}
