using System.Diagnostics;
using MoeServe.Cli.Bench;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Model;
using MoeServe.Inference.Tokenization;
using MoeServe.Routing;
using TorchSharp;

namespace MoeServe.Cli.Eval;

/// <summary>
/// Quality and balance of one model under one routing policy, through the server's model code:
/// held-out perplexity per domain (with a unigram baseline), exact-match accuracy per task family, and
/// expert load statistics of single-domain and mixed batches. Reusable: a policy comparison calls
/// <see cref="Evaluate"/> once per policy.
/// </summary>
public sealed class Evaluator
{
    /// <summary>Group name of every single-domain batch together.</summary>
    public const string SingleGroup = "single";
    public const string MixedGroup = "mixed";
    public static string DomainGroup(string domain) => $"domain:{domain}";

    /// <summary>A held-out document ready to score.</summary>
    private sealed record Doc(int Domain, int[] Ids);

    /// <exception cref="MoeServe.Inference.Checkpoint.CheckpointException">The checkpoint cannot be loaded.</exception>
    /// <exception cref="DirectoryNotFoundException">No data folder.</exception>
    /// <exception cref="NotSupportedException">The routing policy is not implemented.</exception>
    public EvalResult Evaluate(EvalSettings settings)
    {
        long start = Stopwatch.GetTimestamp();
        var log = settings.Log ?? (_ => { });
        var data = EvalData.Open(settings.DataDir);
        if (settings.Threads is int threads) torch.set_num_threads(threads);
        // Like the engine thread: no autograd bookkeeping on anything this thread computes.
        using var inference = torch.inference_mode();
        log($"loading {settings.ModelDir} ...");
        using var model = MoeForCausalLM.Load(settings.ModelDir, settings.Dtype, torch.device(settings.Device), expertDtype: settings.ExpertDtype);
        var config = model.Config;
        var tokenizer = ModelTokenizer.Load(settings.ModelDir, config);
        int context = Math.Min(settings.ContextTokens ?? config.MaxPositionEmbeddings, config.MaxPositionEmbeddings);
        var encoder = new DocumentEncoder(tokenizer, context);
        var notes = new List<string>();
        CheckTokenizer(data, settings.ModelDir, notes);
        if (!encoder.AppendsEndOfText)
            notes.Add($"the model's tokenizer has no {DocumentEncoder.EndOfText} token: documents are scored without their end marker (a trailing literal marker is removed)");

        // Held-out documents, capped per domain, cut to the context.
        var heldout = data.Domains.Where(d => d.HeldoutFile is not null).ToList();
        var docs = new List<List<Doc>>();
        var truncated = new int[heldout.Count];
        for (int i = 0; i < heldout.Count; i++)
        {
            var texts = EvalData.ReadTexts(heldout[i].HeldoutFile!);
            if (settings.MaxDocs is int cap) texts = texts.Take(cap);
            var list = new List<Doc>();
            foreach (var text in texts)
            {
                var (ids, cut) = encoder.EncodeForContext(text);
                if (cut) truncated[i]++;
                list.Add(new Doc(i, ids));
            }
            docs.Add(list);
        }

        // A document of the full context must fit one batch.
        int maxBatchTokens = Math.Max(settings.MaxBatchTokens, context);
        var single = new LoadAccumulator(SingleGroup, config.NumLayers, config.NumExperts, config.ExpertsPerToken);
        var mixed = new LoadAccumulator(MixedGroup, config.NumLayers, config.NumExperts, config.ExpertsPerToken);
        var perDomain = heldout.Select(d => new LoadAccumulator(DomainGroup(d.Name), config.NumLayers, config.NumExperts, config.ExpertsPerToken)).ToArray();
        var singleNll = new double[heldout.Count];
        var mixedNll = new double[heldout.Count];
        var predicted = new long[heldout.Count];
        // Per domain, in file order: Interleave and Batches both keep each domain's documents in order.
        var mixedArgmax = heldout.Select(_ => new List<int[]>()).ToArray();
        using (var scorer = new DocumentScorer(model, maxBatchTokens, settings.BatchDocs))
        {
            // Single-domain batches: consecutive documents of one domain per step.
            for (int i = 0; i < heldout.Count; i++)
            {
                var batches = DocumentScorer.Batches(docs[i], d => d.Ids.Length, settings.BatchDocs, maxBatchTokens);
                log($"perplexity {heldout[i].Name}: {docs[i].Count} documents in {batches.Count} batches ...");
                foreach (var batch in batches)
                {
                    var score = scorer.Score(batch.Select(d => d.Ids).ToList(), settings.Policy, settings.CapacityFactor, settings.Routing);
                    singleNll[i] += score.NllSums.Sum();
                    predicted[i] += score.Predicted.Sum();
                    single.Add(score);
                    perDomain[i].Add(score);
                }
            }
            // Mixed batches: the domains' documents interleaved round-robin, so each step holds several domains.
            var interleaved = Interleave(docs);
            var mixedBatches = DocumentScorer.Batches(interleaved, d => d.Ids.Length, settings.BatchDocs, maxBatchTokens);
            log($"perplexity, mixed batches: {interleaved.Count} documents in {mixedBatches.Count} batches ...");
            foreach (var batch in mixedBatches)
            {
                var score = scorer.Score(batch.Select(d => d.Ids).ToList(), settings.Policy, settings.CapacityFactor, settings.Routing);
                for (int j = 0; j < batch.Count; j++)
                {
                    mixedNll[batch[j].Domain] += score.NllSums[j];
                    mixedArgmax[batch[j].Domain].Add(score.Argmax[j]);
                }
                mixed.Add(score);
            }
        }

        var (unigram, trainDocs) = TrainUnigram(data, encoder, config.VocabSize, log);
        var unigramNll = docs.Select(list => list.Sum(d => d.Ids.Length < 2 ? 0 : unigram.Sum(d.Ids.AsSpan(1)))).ToArray();
        var perplexity = heldout.Select((d, i) => new DomainPerplexity(d.Name, docs[i].Count, predicted[i], truncated[i],
            Mean(singleNll[i], predicted[i]), Mean(mixedNll[i], predicted[i]), Mean(unigramNll[i], predicted[i]))).ToList();
        long allTokens = predicted.Sum();
        var overall = new DomainPerplexity("overall", docs.Sum(d => d.Count), allTokens, truncated.Sum(),
            Mean(singleNll.Sum(), allTokens), Mean(mixedNll.Sum(), allTokens), Mean(unigramNll.Sum(), allTokens));

        var tasks = EvaluateTasks(data, model, tokenizer, settings, context, log);

        var groups = new[] { single.Summarise(settings.DeviceCounts), mixed.Summarise(settings.DeviceCounts) }
            .Concat(perDomain.Select(a => a.Summarise(settings.DeviceCounts))).ToList();
        var skipped = settings.DeviceCounts.Where(d => !LoadMetrics.CanPlace(config.NumExperts, d)).ToList();
        if (skipped.Count > 0) notes.Add($"device counts {string.Join(", ", skipped)} do not split {config.NumExperts} experts into equal contiguous blocks: left out");

        return new EvalResult
        {
            Model = new EvalModelInfo(settings.ModelDir, config.ModelType, config.NumLayers, config.NumExperts, config.ExpertsPerToken,
                config.VocabSize, BenchSettings.DtypeLabel(settings.Dtype, model.ExpertDtype),
                settings.Device, context, encoder.AppendsEndOfText),
            DataDir = settings.DataDir,
            Policy = settings.Policy.ToWireName(),
            CapacityFactor = settings.CapacityFactor,
            MaxDocs = settings.MaxDocs,
            BatchDocs = settings.BatchDocs,
            MaxBatchTokens = maxBatchTokens,
            Perplexity = perplexity,
            OverallPerplexity = overall,
            Unigram = new UnigramInfo(unigram.TotalTokens, trainDocs, unigram.DistinctTokens, unigram.Vocab),
            Tasks = tasks,
            ExpertLoad = new ExpertLoadResult(settings.DeviceCounts.Where(d => LoadMetrics.CanPlace(config.NumExperts, d)).ToList(), groups),
            Seconds = Stopwatch.GetElapsedTime(start).TotalSeconds,
            Notes = notes,
            MixedBatchArgmax = mixedArgmax.Select(l => l.ToArray()).ToList(),
        };
    }

    /// <summary>Unigram counts over every train/*.jsonl document, tokenized exactly like the held-out ones (never truncated).</summary>
    private static (UnigramModel Model, int Documents) TrainUnigram(EvalData data, DocumentEncoder encoder, int vocab, Action<string> log)
    {
        var unigram = new UnigramModel(vocab);
        int documents = 0;
        foreach (var domain in data.Domains.Where(d => d.TrainFile is not null))
        {
            log($"unigram: counting {RepositoryRoot.Display(domain.TrainFile!)} ...");
            foreach (var text in EvalData.ReadTexts(domain.TrainFile!))
            {
                unigram.Add(encoder.Encode(text));
                documents++;
            }
        }
        return (unigram, documents);
    }

    private static List<TaskFamilyResult> EvaluateTasks(EvalData data, MoeForCausalLM model, ModelTokenizer tokenizer, EvalSettings settings,
        int context, Action<string> log)
    {
        var families = data.Domains.Where(d => d.TasksFile is not null).ToList();
        if (families.Count == 0) return [];
        var items = families.Select(f =>
        {
            var all = EvalData.ReadTasks(f.TasksFile!);
            return (settings.MaxDocs is int cap ? all.Take(cap) : all).ToList();
        }).ToList();
        // The server's engine with room for every item of the largest family at once.
        var options = new EngineOptions { MaxQueuedRequests = Math.Max(256, items.Max(i => i.Count)), TorchThreads = settings.Threads ?? 0 };
        using var engine = new InferenceEngine(model, tokenizer, options, NullEngineObserver.Instance, context, routing: settings.Routing);
        var evaluator = new TaskEvaluator(engine, settings.Policy, settings.CapacityFactor, settings.MaxNewTokens);
        var results = new List<TaskFamilyResult>();
        for (int f = 0; f < families.Count; f++)
        {
            log($"tasks {families[f].Name}: {items[f].Count} items ...");
            var replies = evaluator.Generate(items[f]);
            var train = families[f].TrainFile is string path ? EvalData.ReadTexts(path) : null;
            var (answer, source, baseline) = TaskEvaluator.MajorityBaseline(items[f], train);
            var failures = replies.Where(r => !TaskEvaluator.IsCorrect(r)).Take(settings.ExamplesPerFamily)
                .Select(r => new TaskFailure(r.Item.Messages.LastOrDefault(m => m.Role == "user")?.Content ?? "", r.Item.Answer, r.Text.Trim(), r.FinishReason))
                .ToList();
            results.Add(new TaskFamilyResult(families[f].Name, replies.Count, replies.Count(TaskEvaluator.IsCorrect), baseline, answer, source,
                items[f].Select(i => i.Answer.Trim()).Distinct().Count(), replies.Count == 0 ? 0 : replies.Average(r => r.Tokens), failures,
                replies.Select(TaskEvaluator.IsCorrect).ToList()));
        }
        return results;
    }

    /// <summary>Round-robin over the domains: d0[0], d1[0], ..., d0[1], d1[1], ...; shorter domains simply run out.</summary>
    private static List<Doc> Interleave(List<List<Doc>> docs)
    {
        var result = new List<Doc>();
        for (int i = 0; docs.Any(d => i < d.Count); i++)
            foreach (var d in docs) if (i < d.Count) result.Add(d[i]);
        return result;
    }

    /// <summary>The data folder's tokenizer should be the model's: otherwise ids mean different strings to the model than in training.</summary>
    private static void CheckTokenizer(EvalData data, string modelDir, List<string> notes)
    {
        string modelTokenizer = Path.Combine(modelDir, "tokenizer.json");
        if (data.TokenizerJson is null || !File.Exists(modelTokenizer)) return;
        if (File.ReadAllText(data.TokenizerJson) != File.ReadAllText(modelTokenizer))
            notes.Add($"{RepositoryRoot.Display(data.TokenizerJson)} differs from the model's tokenizer.json: texts were tokenized with the model's, " +
                      "so the numbers describe this model on this text, not the model the data was built for");
    }

    private static double Mean(double sum, long count) => count == 0 ? double.NaN : sum / count;
}
