namespace MoeServe.Cli.Eval;

/// <summary>
/// Everything one evaluation measured, plain data: printed by <see cref="EvalReport"/>, written as JSON
/// by the eval command, and compared across routing policies by whoever calls <see cref="Evaluator"/>.
/// NLLs are in nats per predicted token; perplexity = exp(NLL).
/// </summary>
public sealed record EvalResult
{
    public required EvalModelInfo Model { get; init; }
    public required string DataDir { get; init; }
    /// <summary>Wire name of the routing policy (vanilla, token_drop, ...).</summary>
    public required string Policy { get; init; }
    /// <summary>Capacity factor of capacity-aware policies.</summary>
    public required double CapacityFactor { get; init; }
    public required int? MaxDocs { get; init; }
    public required int BatchDocs { get; init; }
    public required int MaxBatchTokens { get; init; }
    public required IReadOnlyList<DomainPerplexity> Perplexity { get; init; }
    /// <summary>All domains' tokens pooled (token-weighted), with domain "overall".</summary>
    public required DomainPerplexity OverallPerplexity { get; init; }
    public required UnigramInfo Unigram { get; init; }
    public required IReadOnlyList<TaskFamilyResult> Tasks { get; init; }
    public required ExpertLoadResult ExpertLoad { get; init; }
    public required double Seconds { get; init; }
    /// <summary>Things a reader must know to trust the numbers (tokenizer mismatch, skipped files, ...).</summary>
    public required IReadOnlyList<string> Notes { get; init; }

    /// <summary>
    /// [held-out domain, as <see cref="Perplexity"/>][document, file order][position] the argmax next-token id of the
    /// mixed batches, for top-1 agreement between policies on the same inputs. Not written to JSON (one number per token).
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<int[][]> MixedBatchArgmax { get; init; } = [];
}

public sealed record EvalModelInfo(string Dir, string ModelType, int Layers, int Experts, int ExpertsPerToken, int Vocab,
    string Dtype, string Device, int ContextTokens, bool AppendsEndOfText);

/// <param name="Documents">Held-out documents scored.</param>
/// <param name="Tokens">Tokens predicted (each document's tokens after its first).</param>
/// <param name="Truncated">Documents cut to the context.</param>
/// <param name="Nll">Mean NLL of the model, single-domain batches.</param>
/// <param name="MixedBatchNll">Mean NLL of the same tokens in mixed batches (equal to <paramref name="Nll"/> up to float
/// rounding unless the policy lets batch-mates change a token's routing).</param>
/// <param name="UnigramNll">Mean NLL of the add-one unigram baseline on the same tokens.</param>
public sealed record DomainPerplexity(string Domain, int Documents, long Tokens, int Truncated, double Nll, double MixedBatchNll, double UnigramNll)
{
    public double Perplexity => Math.Exp(Nll);
    public double MixedBatchPerplexity => Math.Exp(MixedBatchNll);
    public double UnigramPerplexity => Math.Exp(UnigramNll);
    /// <summary>Model perplexity / unigram perplexity: below 1 means the model beats token frequencies.</summary>
    public double RatioToUnigram => Math.Exp(Nll - UnigramNll);
}

/// <param name="TrainTokens">Tokens counted, over every train/*.jsonl file.</param>
/// <param name="DistinctTokens">Vocabulary entries seen at least once.</param>
public sealed record UnigramInfo(long TrainTokens, int TrainDocuments, int DistinctTokens, int Vocab);

/// <param name="Baseline">Accuracy of always replying <paramref name="BaselineAnswer"/>.</param>
/// <param name="BaselineAnswer">The most frequent answer in the family's training conversations (or, without them, among the items).</param>
/// <param name="BaselineSource">"train" or "items".</param>
/// <param name="MeanReplyTokens">Generated tokens per item (the EOS included).</param>
/// <param name="ItemCorrect">Per item, in file order: whether it was answered exactly, so that two policies can be compared item by item.</param>
public sealed record TaskFamilyResult(string Family, int Items, int Correct, double Baseline, string BaselineAnswer, string BaselineSource,
    int DistinctAnswers, double MeanReplyTokens, IReadOnlyList<TaskFailure> Failures, IReadOnlyList<bool> ItemCorrect)
{
    public double Accuracy => Items == 0 ? 0 : (double)Correct / Items;
}

/// <param name="Question">The last user message.</param>
/// <param name="Reply">The trimmed greedy reply.</param>
/// <param name="FinishReason">"stop" (EOS) or "length" (max tokens).</param>
public sealed record TaskFailure(string Question, string Expected, string Reply, string FinishReason);

/// <summary>Load statistics per batch group and the device counts they were computed for.</summary>
/// <param name="Groups">"single" (every single-domain batch), "mixed", then "domain:&lt;name&gt;" per domain.</param>
public sealed record ExpertLoadResult(IReadOnlyList<int> DeviceCounts, IReadOnlyList<LoadGroup> Groups);

/// <summary>Balance over a set of batches (steps) of one kind.</summary>
/// <param name="Batches">Forward passes (steps).</param>
/// <param name="MeanBatchTokens">Mean T per step.</param>
/// <param name="ImbalanceAgg">I_agg: mean of I over layers and steps.</param>
/// <param name="MaxImbalance">Largest I of any layer and step.</param>
/// <param name="Devices">I_dev per device count, mean and max over layers and steps.</param>
/// <param name="Layers">Per-layer statistics over the steps.</param>
/// <param name="ExpertShare">[layer][expert] share of the layer's token-expert pairs over all the group's steps (rows sum to 1).</param>
/// <param name="DroppedShare">Pairs dropped / pairs vanilla routes (T k per layer), over layers and steps.</param>
/// <param name="ReroutedShare">Pairs rerouted / pairs vanilla routes.</param>
public sealed record LoadGroup(string Name, int Batches, long Tokens, double MeanBatchTokens, double ImbalanceAgg, double MaxImbalance,
    IReadOnlyList<DeviceImbalance> Devices, IReadOnlyList<LayerLoad> Layers, double[][] ExpertShare, double DroppedShare, double ReroutedShare)
{
    /// <summary>MaxVio averaged over layers and steps: I_agg - 1.</summary>
    public double MaxVioAgg => ImbalanceAgg - 1;
}

/// <param name="MeanImbalance">Mean of I over steps.</param>
/// <param name="MedianImbalance">Median of I over steps.</param>
/// <param name="MaxImbalance">Max of I over steps.</param>
public sealed record LayerLoad(int Layer, double MeanImbalance, double MedianImbalance, double MaxImbalance, IReadOnlyList<DeviceImbalance> Devices)
{
    public double MeanMaxVio => MeanImbalance - 1;
}

/// <summary>I_dev over steps (and layers, at group level) for <paramref name="Devices"/> devices.</summary>
public sealed record DeviceImbalance(int Devices, double Mean, double Max);
