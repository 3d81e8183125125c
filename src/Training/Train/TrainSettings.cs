namespace MoeServe.Training.Train;

/// <summary>Everything that decides a training run. The trajectory-defining fields are saved with the run and must match on --resume.</summary>
public sealed record TrainSettings
{
    public required string DataDir { get; init; }
    public required string OutDir { get; init; }
    public required long Seed { get; init; }
    /// <summary>Optimizer steps in the whole run.</summary>
    public required int Steps { get; init; }
    /// <summary>Sequences per step (B).</summary>
    public required int BatchSize { get; init; }
    /// <summary>Tokens per sequence (L); each training window holds L + 1 tokens.</summary>
    public required int SeqLen { get; init; }
    /// <summary>Peak learning rate, reached after the warm-up.</summary>
    public required double LearningRate { get; init; }
    /// <summary>The cosine decay ends at LearningRate * MinLrRatio.</summary>
    public double MinLrRatio { get; init; } = 0.1;
    public required int WarmupSteps { get; init; }
    /// <summary>AdamW decoupled weight decay, applied to matrices only (not to norm scales).</summary>
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double GradClip { get; init; } = 1.0;
    public required double AuxLossCoef { get; init; }
    /// <summary>"bfloat16" (matmuls in bf16, float32 master weights) or "float32".</summary>
    public string ComputeDtype { get; init; } = "bfloat16";
    /// <summary>libtorch intra-op threads. Results are bit-identical only for the same thread count.</summary>
    public required int Threads { get; init; }
    public required bool Resume { get; init; }
    /// <summary>Held-out evaluation every this many steps (and at the end).</summary>
    public required int EvalEvery { get; init; }
    /// <summary>Batches of held-out windows per domain in each evaluation.</summary>
    public required int EvalBatches { get; init; }
    /// <summary>Training state saved every this many steps (and at the end).</summary>
    public required int CheckpointEvery { get; init; }

    /// <summary>Stop once this many steps are done (saving the state), to continue later with --resume; null runs to the end.</summary>
    public int? StopAfter { get; init; }

    public string StateDir => Path.Combine(OutDir, ".train-state");

    public long TokensPerStep => (long)BatchSize * SeqLen;

    /// <summary>The fields a resumed run must share with the saved one (name and value as text).</summary>
    public IReadOnlyList<(string Option, string Value)> TrajectoryFields() =>
    [
        ("--seed", Seed.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("--steps", Steps.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("--batch-size", BatchSize.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("--seq-len", SeqLen.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("--lr", LearningRate.ToString("R", System.Globalization.CultureInfo.InvariantCulture)),
        ("--warmup-steps", WarmupSteps.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("--aux-loss-coef", AuxLossCoef.ToString("R", System.Globalization.CultureInfo.InvariantCulture)),
        ("--dtype", ComputeDtype),
    ];

    /// <summary>The torch dtype of <see cref="ComputeDtype"/>.</summary>
    public TorchSharp.torch.ScalarType ComputeScalarType => ParseDtype(ComputeDtype);

    public static TorchSharp.torch.ScalarType ParseDtype(string name) => name switch
    {
        "bfloat16" or "bf16" => TorchSharp.torch.ScalarType.BFloat16,
        "float32" or "fp32" => TorchSharp.torch.ScalarType.Float32,
        _ => throw new ArgumentException($"--dtype must be bfloat16 or float32, got '{name}'"),
    };
}
