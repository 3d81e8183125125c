using MoeServe.Routing;
using static TorchSharp.torch;

namespace MoeServe.Cli.Eval;

/// <summary>
/// What one evaluation runs: the model, the data, the routing policy and the sizes. Built by the eval
/// command, or by any other command (a policy comparison) that calls <see cref="Evaluator.Evaluate"/>.
/// </summary>
public sealed record EvalSettings
{
    /// <summary>Checkpoint folder (config.json, weights, tokenizer).</summary>
    public required string ModelDir { get; init; }

    /// <summary>Data folder laid out as docs/training-data-format.md describes.</summary>
    public required string DataDir { get; init; }

    /// <summary>Routing policy of every forward pass and every generation request.</summary>
    public RoutingPolicy Policy { get; init; } = RoutingPolicy.Vanilla;

    /// <summary>Capacity factor gamma of capacity-aware policies (ignored by the others).</summary>
    public double CapacityFactor { get; init; } = 1.0;

    /// <summary>The policies' global knobs (drop strategy, LASER parameters, ...), as the server's "Routing" section.</summary>
    public RoutingConfig Routing { get; init; } = RoutingConfig.Default;

    /// <summary>Held-out documents per domain and task items per family; null = all.</summary>
    public int? MaxDocs { get; init; } = DefaultMaxDocs;

    /// <summary>Documents run together as one flat batch (one forward pass, one engine step).</summary>
    public int BatchDocs { get; init; } = 8;

    /// <summary>
    /// Most tokens in one flat batch: a batch closes early rather than exceed it. Bounds the [T, V] fp32
    /// logits (every row is wanted) and the activations of one forward pass.
    /// </summary>
    public int MaxBatchTokens { get; init; } = 8192;

    /// <summary>Documents longer than this are cut to their first tokens; null = the model's max_position_embeddings.</summary>
    public int? ContextTokens { get; init; }

    /// <summary>Greedy tokens generated per task item before it is cut off.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Failed task items shown per family in the report.</summary>
    public int ExamplesPerFamily { get; init; } = 2;

    /// <summary>Expert-parallel device counts for the device imbalance (contiguous expert placement).</summary>
    public IReadOnlyList<int> DeviceCounts { get; init; } = [2, 4, 8];

    public ScalarType Dtype { get; init; } = ScalarType.Float32;

    /// <summary>Dtype of the expert weights and products; null: <see cref="Dtype"/>.</summary>
    public ScalarType? ExpertDtype { get; init; }

    /// <summary>libtorch intra-op threads, for the scoring thread and the engine thread; null = libtorch's default.</summary>
    public int? Threads { get; init; }

    /// <summary>A torch device name: "cpu", "cuda", "cuda:1".</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>The default cap on documents per domain: enough for stable numbers, minutes on a CPU.</summary>
    public const int DefaultMaxDocs = 200;

    /// <summary>Progress lines (stderr in the command); null = silent.</summary>
    public Action<string>? Log { get; init; }
}
