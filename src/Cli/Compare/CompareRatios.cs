namespace MoeServe.Cli.Compare;

/// <summary>
/// Each row against the reference (vanilla): the balance gain as LASER reports it (vanilla I_agg over the
/// policy's, so 1.63 reads "1.63x better balanced") and the quality cost as a relative perplexity change.
/// </summary>
public static class CompareRatios
{
    public static double ImbalanceRatio(double reference, double policy) => policy > 0 ? reference / policy : double.NaN;

    public static double PerplexityChangePercent(double reference, double policy) => reference > 0 ? 100 * (policy / reference - 1) : double.NaN;

    /// <returns>The rows, in order, with <see cref="CompareRow.ImbalanceRatio"/> and <see cref="CompareRow.PerplexityChangePercent"/> set.</returns>
    public static List<CompareRow> Apply(IEnumerable<CompareRow> rows, CompareRow reference) =>
        rows.Select(r => r with
        {
            ImbalanceRatio = ImbalanceRatio(reference.ImbalanceAgg, r.ImbalanceAgg),
            PerplexityChangePercent = PerplexityChangePercent(reference.Perplexity, r.Perplexity),
        }).ToList();
}
