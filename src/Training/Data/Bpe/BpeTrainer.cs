using System.Text;

namespace MoeServe.Training.Data.Bpe;

/// <summary>
/// Learns byte-level BPE merges from pre-token counts: repeatedly merges the most frequent adjacent
/// pair, counting over unique pre-tokens weighted by frequency. Pair counts are updated incrementally
/// (only the words holding the merged pair are revisited) and the best pair comes from a priority
/// queue with lazy deletion, so thousands of merges over ~10 MB take seconds.
/// Ties: higher count first, then the smaller left id, then the smaller right id (ids are assigned in
/// a fixed order), so the result depends only on the counts.
/// </summary>
public sealed class BpeTrainer
{
    private readonly int[][] _words;
    private readonly long[] _frequencies;
    private readonly int[] _visited;
    private int _stamp;
    private readonly Dictionary<long, long> _pairCounts = [];
    private readonly Dictionary<long, List<int>> _pairWords = [];
    private readonly PriorityQueue<long, (long Count, int Left, int Right)> _queue = new(PairOrder.Instance);

    private BpeTrainer(IReadOnlyDictionary<string, long> wordCounts)
    {
        // Ordinal order, not the dictionary's: the queue's contents must not depend on insertion order.
        var words = wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray();
        _words = words.Select(kv => Encoding.UTF8.GetBytes(kv.Key).Select(b => (int)b).ToArray()).ToArray();
        _frequencies = words.Select(kv => kv.Value).ToArray();
        _visited = new int[_words.Length];
    }

    /// <summary>
    /// Trains until the vocabulary (256 bytes plus merge results) holds <paramref name="tokenCount"/>
    /// tokens, or no pair is left.
    /// </summary>
    public static BpeModel Train(IReadOnlyDictionary<string, long> wordCounts, int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 256);
        return new BpeTrainer(wordCounts).Run(tokenCount);
    }

    private BpeModel Run(int tokenCount)
    {
        var tokens = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.ForByte((byte)b).ToString()).ToList();
        var ids = tokens.Select((t, i) => (t, i)).ToDictionary(x => x.t, x => x.i, StringComparer.Ordinal);
        var merges = new List<(string, string)>();
        CountAllPairs();
        while (tokens.Count < tokenCount && TryPopBest(out int left, out int right))
        {
            string merged = tokens[left] + tokens[right];
            // Two different merges can spell the same token ("ab"+"c", "a"+"bc"); like Hugging Face's
            // trainer, the second reuses the first's id and only adds a merge rule.
            if (!ids.TryGetValue(merged, out int mergedId))
            {
                mergedId = tokens.Count;
                tokens.Add(merged);
                ids[merged] = mergedId;
            }
            merges.Add((tokens[left], tokens[right]));
            ApplyMerge(left, right, mergedId);
        }
        return new BpeModel(tokens, merges);
    }

    private void CountAllPairs()
    {
        for (int w = 0; w < _words.Length; w++)
        {
            var word = _words[w];
            for (int i = 0; i + 1 < word.Length; i++)
            {
                long key = Key(word[i], word[i + 1]);
                _pairCounts[key] = _pairCounts.GetValueOrDefault(key) + _frequencies[w];
                IndexWord(key, w);
            }
        }
        foreach (var (key, count) in _pairCounts) Enqueue(key, count);
    }

    /// <summary>The best pair whose queued count is still current; stale entries are dropped.</summary>
    private bool TryPopBest(out int left, out int right)
    {
        while (_queue.TryDequeue(out long key, out var priority))
        {
            if (_pairCounts.GetValueOrDefault(key) != priority.Count) continue;
            (left, right) = (priority.Left, priority.Right);
            return true;
        }
        (left, right) = (-1, -1);
        return false;
    }

    private void ApplyMerge(int left, int right, int mergedId)
    {
        long key = Key(left, right);
        var changed = new HashSet<long>();
        _stamp++;
        foreach (int w in _pairWords[key])
        {
            // The index may list a word twice, or list one that lost the pair to an earlier merge.
            if (_visited[w] == _stamp) continue;
            _visited[w] = _stamp;
            var word = _words[w];
            if (!Contains(word, left, right)) continue;
            AddPairCounts(word, -_frequencies[w], changed);
            var mergedWord = MergeWord(word, left, right, mergedId);
            _words[w] = mergedWord;
            AddPairCounts(mergedWord, _frequencies[w], changed);
            for (int i = 0; i + 1 < mergedWord.Length; i++)
                if (mergedWord[i] == mergedId || mergedWord[i + 1] == mergedId) IndexWord(Key(mergedWord[i], mergedWord[i + 1]), w);
        }
        _pairWords.Remove(key);
        foreach (long k in changed)
            if (_pairCounts.TryGetValue(k, out long count)) Enqueue(k, count);
    }

    private void AddPairCounts(int[] word, long delta, HashSet<long> changed)
    {
        for (int i = 0; i + 1 < word.Length; i++)
        {
            long key = Key(word[i], word[i + 1]);
            long count = _pairCounts.GetValueOrDefault(key) + delta;
            if (count == 0) _pairCounts.Remove(key);
            else _pairCounts[key] = count;
            changed.Add(key);
        }
    }

    /// <summary>Replaces every non-overlapping (left, right), scanning left to right ("aaa" -> "aa a").</summary>
    private static int[] MergeWord(int[] word, int left, int right, int mergedId)
    {
        var result = new List<int>(word.Length);
        for (int i = 0; i < word.Length; i++)
        {
            if (i + 1 < word.Length && word[i] == left && word[i + 1] == right)
            {
                result.Add(mergedId);
                i++;
            }
            else result.Add(word[i]);
        }
        return result.ToArray();
    }

    private static bool Contains(int[] word, int left, int right)
    {
        for (int i = 0; i + 1 < word.Length; i++)
            if (word[i] == left && word[i + 1] == right) return true;
        return false;
    }

    private void IndexWord(long key, int w)
    {
        if (!_pairWords.TryGetValue(key, out var list)) _pairWords[key] = list = [];
        if (list.Count == 0 || list[^1] != w) list.Add(w);
    }

    private void Enqueue(long key, long count) => _queue.Enqueue(key, (count, (int)(key >> 32), (int)(key & 0xFFFFFFFF)));

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Highest count first; ties to the smaller left id, then the smaller right id.</summary>
    private sealed class PairOrder : IComparer<(long Count, int Left, int Right)>
    {
        public static readonly PairOrder Instance = new();

        public int Compare((long Count, int Left, int Right) x, (long Count, int Left, int Right) y)
        {
            int byCount = y.Count.CompareTo(x.Count);
            if (byCount != 0) return byCount;
            int byLeft = x.Left.CompareTo(y.Left);
            return byLeft != 0 ? byLeft : x.Right.CompareTo(y.Right);
        }
    }
}
