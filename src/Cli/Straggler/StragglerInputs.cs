using MoeServe.Cli.Eval;

namespace MoeServe.Cli.Straggler;

/// <summary>
/// Mixed-domain batches for the straggler benchmark: each domain's held-out documents are tokenized and
/// joined into one stream, cut into windows of a fixed length (as training windows are), and every batch
/// takes its windows round-robin over the domains, so each engine step holds several domains as a
/// server's mixed traffic does. Alternate batches are set aside to calibrate the load-aware placement,
/// so that placement is never judged on the loads it was computed from.
/// </summary>
/// <param name="Measured">Batches the table reports: each a list of windows (token ids).</param>
/// <param name="Calibration">Batches whose vanilla loads build the load-aware placement.</param>
/// <param name="Domains">Domain names, in the round-robin order.</param>
public sealed record StragglerInputs(List<List<int[]>> Measured, List<List<int[]>> Calibration, List<string> Domains)
{
    /// <param name="windowTokens">Tokens per window (one sequence of a batch).</param>
    /// <param name="batchWindows">Windows per batch: T = windowTokens x batchWindows.</param>
    /// <param name="batches">Measured batches wanted (as many calibration batches are built).</param>
    /// <exception cref="InvalidDataException">The held-out data cannot fill the batches.</exception>
    public static StragglerInputs Build(EvalData data, DocumentEncoder encoder, int windowTokens, int batchWindows, int batches)
    {
        var domains = data.Domains.Where(d => d.HeldoutFile is not null).ToList();
        var windows = domains.Select(d => Windows(EvalData.ReadTexts(d.HeldoutFile!).SelectMany(encoder.Encode), windowTokens)).ToList();
        var interleaved = new List<int[]>();
        for (int i = 0; windows.Any(w => i < w.Count); i++)
            foreach (var w in windows) if (i < w.Count) interleaved.Add(w[i]);
        var all = interleaved.Chunk(batchWindows).Where(c => c.Length == batchWindows).Select(c => c.ToList()).ToList();
        if (all.Count < 2 * batches)
            throw new InvalidDataException($"the held-out data gives {all.Count} full batches of {batchWindows} x {windowTokens} tokens; {2 * batches} are needed (lower --batches or --window-tokens)");
        // Even batches calibrate, odd ones are measured: both cover the same mix of domains.
        var calibration = all.Where((_, i) => i % 2 == 0).Take(batches).ToList();
        var measured = all.Where((_, i) => i % 2 == 1).Take(batches).ToList();
        return new StragglerInputs(measured, calibration, domains.Select(d => d.Name).ToList());
    }

    private static List<int[]> Windows(IEnumerable<int> stream, int length) =>
        stream.Chunk(length).Where(c => c.Length == length).ToList();
}
