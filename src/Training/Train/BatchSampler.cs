namespace MoeServe.Training.Train;

/// <summary>
/// Draws training windows of L + 1 tokens: each row picks a domain with probability equal to its share of
/// the training tokens, then a uniformly random start inside that domain's token stream. The generator
/// of step s is a System.Random seeded from (seed, s) alone, so any step's batch can be redrawn exactly
/// (a resumed run needs no generator state) and the batches do not depend on how many were drawn before.
/// </summary>
public sealed class BatchSampler
{
    private readonly IReadOnlyList<int[]> _streams;
    private readonly double[] _cumulativeShare;
    private readonly int[] _streamOfSlot;
    private readonly int _seqLen, _batchSize;
    private readonly long _seed;

    /// <param name="streams">Per domain, its training documents concatenated. Streams shorter than L + 1 tokens are never drawn.</param>
    public BatchSampler(IReadOnlyList<int[]> streams, int seqLen, int batchSize, long seed)
    {
        _streams = streams;
        _seqLen = seqLen;
        _batchSize = batchSize;
        _seed = seed;
        _streamOfSlot = Enumerable.Range(0, streams.Count).Where(i => streams[i].Length > seqLen).ToArray();
        if (_streamOfSlot.Length == 0) throw new ArgumentException($"no domain has more than {seqLen} training tokens");
        double total = _streamOfSlot.Sum(i => (double)streams[i].Length);
        _cumulativeShare = new double[_streamOfSlot.Length];
        double running = 0;
        for (int s = 0; s < _streamOfSlot.Length; s++)
        {
            running += streams[_streamOfSlot[s]].Length / total;
            _cumulativeShare[s] = running;
        }
        _cumulativeShare[^1] = 1.0;
    }

    /// <summary>Domains that are drawn (the others are too short for one window).</summary>
    public IReadOnlyList<int> DrawnStreams => _streamOfSlot;

    /// <returns>[B * (L + 1)] token ids, row-major, and the domain index of each row.</returns>
    public (long[] Tokens, int[] Domains) Sample(long step)
    {
        var random = new Random(StepSeed(_seed, step));
        int width = _seqLen + 1;
        var tokens = new long[(long)_batchSize * width];
        var domains = new int[_batchSize];
        for (int row = 0; row < _batchSize; row++)
        {
            double u = random.NextDouble();
            int slot = 0;
            while (slot < _cumulativeShare.Length - 1 && u >= _cumulativeShare[slot]) slot++;
            int stream = _streamOfSlot[slot];
            var source = _streams[stream];
            int start = random.Next(source.Length - width + 1);
            for (int i = 0; i < width; i++) tokens[row * width + i] = source[start + i];
            domains[row] = stream;
        }
        return (tokens, domains);
    }

    /// <summary>A 31-bit seed for step <paramref name="step"/> (SplitMix64 finaliser of seed and step).</summary>
    internal static int StepSeed(long seed, long step)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step + 0x632BE59BD9B4E019UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return (int)(z & 0x7FFFFFFF);
    }
}
