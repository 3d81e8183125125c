namespace MoeServe.Cli.Load;

/// <summary>One round of the load benchmark: the concurrency sweep, then the PyTorch peer (null when not run or it failed).</summary>
public sealed record LoadRound(IReadOnlyList<LevelResult> Levels, PeerResult? Peer)
{
    public LevelResult? Level(int concurrency) => Levels.FirstOrDefault(l => l.Concurrency == concurrency);

    /// <summary>Every round's requests of each level together, as if one run of the summed duration.</summary>
    public static IReadOnlyList<LevelResult> Pool(IReadOnlyList<LoadRound> rounds) =>
        rounds[0].Levels.Select(first => new LevelResult(first.Concurrency,
            rounds.Sum(r => r.Level(first.Concurrency)!.Seconds),
            rounds.SelectMany(r => r.Level(first.Concurrency)!.Requests).ToList())).ToList();
}
