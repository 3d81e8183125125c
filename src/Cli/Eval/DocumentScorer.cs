using MoeServe.Inference.Model;
using MoeServe.Routing;
using static TorchSharp.torch;

namespace MoeServe.Cli.Eval;

/// <summary>What one flat batch of documents scored: per document the summed NLL of its predicted tokens.</summary>
/// <param name="NllSums">[documents] sum over tokens 1..n-1 of -log p(token | prefix), nats.</param>
/// <param name="Predicted">[documents] how many tokens were predicted (n - 1).</param>
/// <param name="ExpertLoads">[layer][expert] token-expert pairs executed in this forward pass.</param>
/// <param name="Tokens">T, rows of the flat batch.</param>
/// <param name="DroppedPairs">Token-expert pairs the policy dropped, summed over layers.</param>
/// <param name="ReroutedPairs">Pairs the policy sent to another expert than vanilla would, summed over layers.</param>
public sealed record BatchScore(double[] NllSums, int[] Predicted, long[][] ExpertLoads, int Tokens, long DroppedPairs, long ReroutedPairs)
{
    /// <summary>[documents][n - 1] the argmax (top-1) next-token id at each predicted position, ties to the lower id:
    /// what two routing policies' next-token agreement compares.</summary>
    public int[][] Argmax { get; init; } = [];
}

/// <summary>
/// Scores documents through the server's own model code: several documents form one flat batch, each a
/// <see cref="SequenceSlice"/> with slots of its own in the paged cache (exactly an engine prefill step
/// of several fresh sequences), and every row's logits are asked for, so row i of a document gives the
/// distribution of its token i + 1. Must run on a thread in inference mode.
/// </summary>
public sealed class DocumentScorer : IDisposable
{
    private const int BlockSize = 16;
    private readonly MoeForCausalLM _model;
    private readonly PagedKvCache _cache;
    private readonly int _maxTokens;
    private readonly int _maxDocs;

    /// <param name="maxBatchTokens">Largest T of a batch given to <see cref="Score"/>.</param>
    /// <param name="maxBatchDocs">Most documents in a batch.</param>
    public DocumentScorer(MoeForCausalLM model, int maxBatchTokens, int maxBatchDocs)
    {
        _model = model;
        _maxTokens = maxBatchTokens;
        _maxDocs = maxBatchDocs;
        // Each document starts on a fresh block, so it wastes at most one partial block; block 0 is the
        // cache's reserved padding block. One cache is reused: every batch rewrites its slots from position 0.
        _cache = model.NewCache(1 + (maxBatchTokens + BlockSize - 1) / BlockSize + maxBatchDocs, BlockSize);
    }

    /// <summary>What routing and the expert-parallel devices did in the last <see cref="Score"/> call.</summary>
    public StepRoutingStats? LastRoutingStats { get; private set; }

    /// <param name="documents">Token ids of each document, at most the model's context each.</param>
    /// <param name="policy">Every token's policy; <paramref name="capacityFactor"/> and <paramref name="config"/> as a request and the server would set them.</param>
    public BatchScore Score(IReadOnlyList<int[]> documents, RoutingPolicy policy, double capacityFactor = 1.0, RoutingConfig? config = null)
    {
        int t = documents.Sum(d => d.Length);
        if (t > _maxTokens || documents.Count > _maxDocs)
            throw new ArgumentException($"batch of {documents.Count} documents / {t} tokens exceeds {_maxDocs} / {_maxTokens}");
        var tokens = new long[t];
        var slices = new SequenceSlice[documents.Count];
        int start = 0, nextBlock = 1;
        for (int d = 0; d < documents.Count; d++)
        {
            var doc = documents[d];
            for (int i = 0; i < doc.Length; i++) tokens[start + i] = doc[i];
            int blocks = (doc.Length + BlockSize - 1) / BlockSize;
            var blockIds = Enumerable.Range(nextBlock, blocks).ToList();
            nextBlock += blocks;
            slices[d] = new SequenceSlice(start, doc.Length, 0, _cache.Slots(blockIds, doc.Length));
            start += doc.Length;
        }
        var batch = new ForwardBatch
        {
            TokenIds = tokens,
            Sequences = slices,
            LogitRows = Enumerable.Range(0, t).Select(r => (long)r).ToArray(),
            Cache = _cache,
            // As the engine does: expanded_drop's local experts follow the model's expert placement.
            Routing = BatchRouting.All(t, policy, capacityFactor, config, placement: _model.ExpertParallel.Placement),
        };
        float[] logits;
        int vocab;
        using (var scope = NewDisposeScope())
        {
            var output = _model.Forward(batch); // [T, V] fp32 on the CPU
            vocab = (int)output.shape[1];
            logits = output.data<float>().ToArray();
        }

        var sums = new double[documents.Count];
        var predicted = new int[documents.Count];
        var argmax = new int[documents.Count][];
        for (int d = 0; d < documents.Count; d++)
        {
            var doc = documents[d];
            argmax[d] = [];
            if (doc.Length < 2) continue; // a one-token document has no token with a prefix
            // Row Start + i predicts doc[i + 1]; the document's last row predicts nothing of it.
            sums[d] = TokenNll.Sum(logits, vocab, slices[d].Start, doc.AsSpan(1));
            predicted[d] = doc.Length - 1;
            argmax[d] = Enumerable.Range(slices[d].Start, doc.Length - 1).Select(row => Argmax(logits, vocab, row)).ToArray();
        }
        var stats = batch.RoutingStats!;
        LastRoutingStats = stats;
        return new BatchScore(sums, predicted, stats.ExpertLoads, t, stats.DroppedPerToken.Sum(), stats.ReroutedPerToken.Sum()) { Argmax = argmax };
    }

    /// <summary>The index of the largest logit of row <paramref name="row"/>, the lowest index among equals.</summary>
    private static int Argmax(float[] logits, int vocab, int row) =>
        MoeServe.Inference.Sampling.Sampler.ArgMax(logits.AsSpan(row * vocab, vocab));

    /// <summary>Splits items, in order, into batches of at most <paramref name="maxDocs"/> items and <paramref name="maxTokens"/> tokens.</summary>
    public static List<List<T>> Batches<T>(IEnumerable<T> items, Func<T, int> length, int maxDocs, int maxTokens)
    {
        var batches = new List<List<T>>();
        var current = new List<T>();
        int tokens = 0;
        foreach (var item in items)
        {
            int n = length(item);
            if (current.Count > 0 && (current.Count == maxDocs || tokens + n > maxTokens))
            {
                batches.Add(current);
                current = [];
                tokens = 0;
            }
            current.Add(item);
            tokens += n;
        }
        if (current.Count > 0) batches.Add(current);
        return batches;
    }

    public void Dispose() => _cache.Dispose();
}
