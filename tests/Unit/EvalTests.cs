using System.Text.Json;
using MoeServe.Cli.Eval;
using MoeServe.Inference.Model;
using MoeServe.Inference.Tokenization;
using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>The evaluator's numbers checked against direct computations (`moeserve-cli eval`).</summary>
public class EvalTests
{
    private static string Model => RepositoryPaths.DefaultModel;

    [Fact]
    public void Document_nll_in_a_flat_batch_equals_log_softmax_of_the_same_model_run_alone()
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        using var model = MoeForCausalLM.Load(Model, ScalarType.Float32, CPU);
        var tokenizer = ModelTokenizer.Load(Model, model.Config);
        int[] doc = tokenizer.Encode("The quick brown fox jumps over the lazy dog.", addBos: false);
        int[] other = tokenizer.Encode("<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n", addBos: false);
        Assert.True(doc.Length >= 5);

        // Direct: the document alone, every row's logits, torch's log_softmax, the next token's entry.
        double expected;
        using (var cache = model.NewCache(1 + (doc.Length + 15) / 16, 16))
        {
            var slots = cache.Slots(Enumerable.Range(1, (doc.Length + 15) / 16).ToList(), doc.Length);
            var logits = model.Forward(new ForwardBatch
            {
                TokenIds = doc.Select(t => (long)t).ToArray(),
                Sequences = [new SequenceSlice(0, doc.Length, 0, slots)],
                LogitRows = Enumerable.Range(0, doc.Length).Select(r => (long)r).ToArray(),
                Cache = cache,
            }); // [n, V]
            var logp = logits.narrow(0, 0, doc.Length - 1).to(ScalarType.Float64).log_softmax(1); // [n-1, V]
            var targets = torch.tensor(doc[1..].Select(t => (long)t).ToArray()).unsqueeze(1); // [n-1, 1]
            expected = -logp.gather(1, targets).sum().item<double>();
        }

        // The evaluator: the document second in a flat batch of two, so its rows start at an offset.
        using var scorer = new DocumentScorer(model, maxBatchTokens: 256, maxBatchDocs: 4);
        var score = scorer.Score([other, doc], RoutingPolicy.Vanilla);
        Assert.Equal(doc.Length - 1, score.Predicted[1]);
        Assert.Equal(other.Length - 1, score.Predicted[0]);
        Assert.Equal(expected, score.NllSums[1], 1e-3 * doc.Length);
        // Alone it scores the same: vanilla routing does not depend on batch-mates.
        Assert.Equal(score.NllSums[1], scorer.Score([doc], RoutingPolicy.Vanilla).NllSums[0], 1e-3 * doc.Length);
        // Every pair counted: T tokens x k experts per layer.
        Assert.All(score.ExpertLoads, layer => Assert.Equal((long)score.Tokens * model.Config.ExpertsPerToken, layer.Sum()));
    }

    [Fact]
    public void A_literal_end_marker_is_dropped_when_the_tokenizer_has_no_such_token()
    {
        var tokenizer = ModelTokenizer.Load(Model, MoeServe.Inference.Checkpoint.ModelConfig.Load(Model));
        Assert.False(tokenizer.SpecialTokens.ContainsKey(DocumentEncoder.EndOfText)); // the random model's tokenizer
        var encoder = new DocumentEncoder(tokenizer, contextTokens: 4);
        Assert.Equal(encoder.Encode("Some text."), encoder.Encode("Some text.<|endoftext|>"));
        var (ids, truncated) = encoder.EncodeForContext("Some longer text than four tokens.");
        Assert.True(truncated);
        Assert.Equal(4, ids.Length);
    }

    [Fact]
    public void A_uniform_model_has_perplexity_equal_to_the_vocabulary_size()
    {
        const int vocab = 360;
        var logits = new float[3 * vocab]; // [3, V] all equal
        Array.Fill(logits, 2.5f);
        double nll = TokenNll.Sum(logits, vocab, 0, new[] { 7, 0, 359 }) / 3;
        Assert.Equal(vocab, Math.Exp(nll), 1e-6);
    }

    [Fact]
    public void Token_nll_is_stable_for_large_logits()
    {
        float[] logits = [1000f, 0f, -1000f];
        Assert.Equal(0, TokenNll.Of(logits, 3, 0, 0), 1e-9);
        Assert.Equal(1000, TokenNll.Of(logits, 3, 0, 1), 1e-6);
    }

    [Fact]
    public void Unigram_uses_add_one_smoothing_over_the_vocabulary()
    {
        var unigram = new UnigramModel(vocab: 4);
        unigram.Add([0, 0, 1]);
        Assert.Equal(-Math.Log(3.0 / 7), unigram.Nll(0), 12);
        Assert.Equal(-Math.Log(1.0 / 7), unigram.Nll(3), 12); // never seen: still finite
        Assert.Equal(2, unigram.DistinctTokens);
    }

    [Fact]
    public void Imbalance_and_contiguous_device_imbalance()
    {
        long[] loads = [4, 0, 0, 0, 2, 2, 2, 6]; // sum 16, mean 2
        Assert.Equal(3.0, LoadMetrics.Imbalance(loads), 12);
        Assert.Equal(new long[] { 4, 12 }, LoadMetrics.DeviceLoads(loads, 2));
        Assert.Equal(1.5, LoadMetrics.DeviceImbalance(loads, 2), 12);
        Assert.Equal(2.0, LoadMetrics.DeviceImbalance(loads, 4), 12);     // [4, 0, 4, 8]
        Assert.Equal(3.0, LoadMetrics.DeviceImbalance(loads, 8), 12);     // one expert per device = I
        Assert.Equal(1.0, LoadMetrics.Imbalance(new long[] { 0, 0 }), 12); // nothing executed
        Assert.False(LoadMetrics.CanPlace(8, 3));
        Assert.False(LoadMetrics.CanPlace(8, 16));
    }

    [Fact]
    public void Load_group_averages_imbalance_over_layers_and_steps()
    {
        var acc = new LoadAccumulator("g", layers: 2, experts: 4, expertsPerToken: 1);
        acc.Add([[1, 1, 1, 1], [4, 0, 0, 0]], tokens: 2); // I = 1 and 4
        acc.Add([[2, 2, 0, 0], [1, 1, 1, 1]], tokens: 4, dropped: 2); // I = 2 and 1
        var g = acc.Summarise([2, 3]);
        Assert.Equal((1 + 4 + 2 + 1) / 4.0, g.ImbalanceAgg, 12);
        Assert.Equal(g.ImbalanceAgg - 1, g.MaxVioAgg, 12);
        Assert.Equal(4.0, g.MaxImbalance, 12);
        Assert.Equal(2.5, g.Layers[1].MeanImbalance, 12);
        Assert.Equal([2], g.Devices.Select(d => d.Devices)); // 3 devices cannot hold 4 experts evenly
        Assert.Equal(new[] { 3 / 8.0, 3 / 8.0, 1 / 8.0, 1 / 8.0 }, g.ExpertShare[0]);
        Assert.Equal(2 / 12.0, g.DroppedShare, 12); // 6 tokens x k=1 x 2 layers routed
        Assert.Equal(3.0, g.MeanBatchTokens, 12);
    }

    [Fact]
    public void Batches_respect_the_document_and_token_limits()
    {
        var batches = DocumentScorer.Batches([5, 5, 5, 9, 1, 1], x => x, maxDocs: 2, maxTokens: 10);
        Assert.Equal([[5, 5], [5], [9, 1], [1]], batches);
    }

    [Fact]
    public void Majority_baseline_comes_from_the_training_conversations()
    {
        TaskItem Item(string answer) => new([new ChatMessage("user", "q")], answer);
        string Chat(string answer) => $"<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n";
        var items = new[] { Item("yes"), Item("no"), Item("no"), Item("yes") };
        var (answer, source, accuracy) = TaskEvaluator.MajorityBaseline(items, [Chat("yes"), Chat("yes"), Chat("no")]);
        Assert.Equal(("yes", "train", 0.5), (answer, source, accuracy));
        Assert.Equal("items", TaskEvaluator.MajorityBaseline(items, null).Source);
    }

    [Fact]
    public void Evaluates_a_small_data_folder_end_to_end()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"moeserve-eval-{Guid.NewGuid():N}");
        try
        {
            WriteData(dir);
            var result = new Evaluator().Evaluate(new EvalSettings { ModelDir = Model, DataDir = dir, BatchDocs = 2, MaxNewTokens = 4 });
            Assert.Equal(["prose", "sums"], result.Perplexity.Select(p => p.Domain));
            Assert.Equal([4, 3], result.Perplexity.Select(p => p.Documents));
            foreach (var p in result.Perplexity)
            {
                Assert.True(p.Tokens > 0 && double.IsFinite(p.Nll));
                Assert.Equal(p.Nll, p.MixedBatchNll, 3); // vanilla: batch-mates do not matter
                Assert.True(p.UnigramPerplexity > 1 && p.UnigramPerplexity < result.Model.Vocab);
            }
            var task = Assert.Single(result.Tasks);
            Assert.Equal(("sums", 2, "train"), (task.Family, task.Items, task.BaselineSource));
            Assert.Equal(["single", "mixed", "domain:prose", "domain:sums"], result.ExpertLoad.Groups.Select(g => g.Name));
            Assert.Equal([2, 4, 8], result.ExpertLoad.DeviceCounts);
            Assert.All(result.ExpertLoad.Groups, g => Assert.True(g.ImbalanceAgg >= 1));

            var roundTrip = EvalJson.Deserialize(EvalJson.Serialize(result));
            Assert.Equal(result.OverallPerplexity.Nll, roundTrip.OverallPerplexity.Nll);
            Assert.Equal(result.ExpertLoad.Groups[1].ExpertShare[0], roundTrip.ExpertLoad.Groups[1].ExpertShare[0]);
            using (var json = JsonDocument.Parse(EvalJson.Serialize(result)))
                Assert.True(json.RootElement.GetProperty("perplexity")[0].TryGetProperty("perplexity", out _));

            string svg = Path.Combine(dir, "heatmap.svg");
            LoadHeatmap.WriteSvg(result, svg);
            var xml = System.Xml.Linq.XDocument.Load(svg); // one well-formed document
            Assert.Equal(3, xml.Root!.Elements().Count(e => e.Name.LocalName == "g")); // prose, sums, mixed
            Assert.Contains("Held-out perplexity", EvalReport.Format(result));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Two domains (prose; sums with tasks) in the layout of docs/training-data-format.md.</summary>
    private static void WriteData(string dir)
    {
        foreach (var sub in new[] { "train", "heldout", "tasks" }) Directory.CreateDirectory(Path.Combine(dir, sub));
        string Line(object o) => JsonSerializer.Serialize(o);
        string Chat(int a, int b) => $"<|im_start|>user\nWhat is {a} + {b}?<|im_end|>\n<|im_start|>assistant\n{a + b}<|im_end|>\n";
        File.WriteAllLines(Path.Combine(dir, "train", "prose.jsonl"), Enumerable.Range(0, 5).Select(i => Line(new { text = $"The cat sat on mat number {i}." })));
        File.WriteAllLines(Path.Combine(dir, "heldout", "prose.jsonl"), Enumerable.Range(0, 4).Select(i => Line(new { text = $"A dog ran to park {i} today." })));
        File.WriteAllLines(Path.Combine(dir, "train", "sums.jsonl"), Enumerable.Range(0, 5).Select(i => Line(new { text = Chat(i, 1) })));
        File.WriteAllLines(Path.Combine(dir, "heldout", "sums.jsonl"), Enumerable.Range(0, 3).Select(i => Line(new { text = Chat(i, 7) })));
        File.WriteAllLines(Path.Combine(dir, "tasks", "sums.jsonl"), Enumerable.Range(0, 2).Select(i =>
            Line(new { messages = new[] { new { role = "user", content = $"What is {i} + 9?" } }, answer = $"{i + 9}" })));
        File.WriteAllText(Path.Combine(dir, "manifest.json"), """
            {"seed": 1, "tokenizer": "tokenizer", "domains": [
              {"name": "prose", "kind": "text", "train": "train/prose.jsonl", "heldout": "heldout/prose.jsonl"},
              {"name": "sums", "kind": "task", "train": "train/sums.jsonl", "heldout": "heldout/sums.jsonl", "tasks": "tasks/sums.jsonl"}]}
            """);
    }
}
