using MoeServe.Training.Model;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Training.Train;

/// <summary>Mean next-token cross-entropy (nats per token) of one domain's held-out windows.</summary>
public sealed record DomainLoss(string Domain, double Loss, long Tokens)
{
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>
/// Held-out loss per domain on fixed windows: for each domain, EvalBatches * B windows of L + 1 tokens at
/// evenly spaced offsets of its held-out stream (shorter windows when the stream is short). The windows
/// never change, so successive evaluations are comparable and need no random numbers.
/// </summary>
public sealed class HeldoutEvaluator
{
    private readonly List<(string Domain, long[][] Windows)> _domains = [];
    private readonly int _batchSize;

    public HeldoutEvaluator(IReadOnlyList<DomainTokens> domains, int seqLen, int batchSize, int batches)
    {
        _batchSize = batchSize;
        foreach (var d in domains)
        {
            var stream = d.Heldout;
            if (stream.Length < 2) continue;
            int width = Math.Min(seqLen + 1, stream.Length);
            int count = Math.Max(1, Math.Min(batches * batchSize, stream.Length - width + 1));
            long span = stream.Length - width;
            var windows = new long[count][];
            for (int w = 0; w < count; w++)
            {
                long start = count == 1 ? 0 : span * w / (count - 1);
                windows[w] = new long[width];
                for (int i = 0; i < width; i++) windows[w][i] = stream[start + i];
            }
            _domains.Add((d.Name, windows));
        }
    }

    public IReadOnlyList<string> Domains => _domains.Select(d => d.Domain).ToList();

    public IReadOnlyList<DomainLoss> Evaluate(MixtralForCausalLM model)
    {
        model.eval();
        using var noGrad = torch.no_grad();
        var results = new List<DomainLoss>();
        foreach (var (domain, windows) in _domains)
        {
            double sum = 0;
            long tokens = 0;
            for (int first = 0; first < windows.Length; first += _batchSize)
            {
                using var scope = NewDisposeScope();
                int rows = Math.Min(_batchSize, windows.Length - first), width = windows[first].Length;
                var ids = torch.tensor(windows.Skip(first).Take(rows).SelectMany(w => w).ToArray()).view(rows, width);
                var output = model.forward(ids.narrow(1, 0, width - 1));
                var loss = F.cross_entropy(output.Logits.reshape(-1, output.Logits.shape[2]), ids.narrow(1, 1, width - 1).reshape(-1), reduction: nn.Reduction.Sum);
                sum += loss.item<float>();
                tokens += (long)rows * (width - 1);
            }
            results.Add(new DomainLoss(domain, sum / tokens, tokens));
        }
        model.train();
        return results;
    }
}
